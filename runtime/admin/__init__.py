"""The Python admin API: a Session on a server's admin port, used by the console, TUI, recipes and scripts."""

from runtime.admin.errors import (AdminError, AmbiguousJob, BadArgument, BadUpload, Denied, InvalidJob, NotFound,
                                  Refused, ServerUnreachable, Unavailable, UnknownJob, Unsupported)
from runtime.admin.session import FINAL_STATUSES, Event, EventStream, LogStream, Session

__all__ = ["AdminError", "AmbiguousJob", "BadArgument", "BadUpload", "Denied", "Event", "EventStream",
           "FINAL_STATUSES", "InvalidJob", "LogStream", "NotFound", "Refused", "ServerUnreachable",
           "Session", "Unavailable", "UnknownJob", "Unsupported"]
