"""The Python admin API: a Session on a server's admin port, used by the console, TUI, recipes and scripts."""

from runtime.admin.errors import (AdminError, AmbiguousJob, BadArgument, BadUpload, Denied, InvalidJob, NotFound,
                                  Refused, ServerUnreachable, UnknownJob)
from runtime.admin.session import FINAL_STATUSES, Event, EventStream, Session

__all__ = ["AdminError", "AmbiguousJob", "BadArgument", "BadUpload", "Denied", "Event", "EventStream", "FINAL_STATUSES", "InvalidJob",
           "NotFound", "Refused", "ServerUnreachable", "Session", "UnknownJob"]
