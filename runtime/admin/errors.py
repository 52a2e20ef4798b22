"""Errors of the admin Session: one class per kind of refusal, each with a message a person can act on."""

from __future__ import annotations


class AdminError(Exception):
    """An admin call failed; the message says why and, where it can, what to do."""


class UnknownJob(AdminError):
    """No job on the server matches the id or prefix."""


class AmbiguousJob(AdminError):
    """The prefix matches several jobs (the message lists them): give more characters."""


class Refused(AdminError):
    """The server refused the operation in the job's current state (e.g. delete a running job)."""


class InvalidJob(AdminError):
    """The job folder is not a valid job: the message names the file and field at fault."""


class BadUpload(AdminError):
    """The job archive was refused (path traversal, size limits, a missing folder...)."""


class BadArgument(AdminError):
    """A call's arguments were refused (an unknown status name, a negative limit...)."""


class NotFound(AdminError):
    """Something other than a job is missing, e.g. a site's log for a job."""


class Denied(AdminError):
    """The server's authorization policy refuses this admin the command ("member cannot
    submit_job"), or the admin's certificate is not accepted on the admin port."""


class ServerUnreachable(AdminError):
    """The server's admin port did not answer: it is not running, or the address is wrong."""


# The "flshell-error" trailing metadata the admin service sends -> the error to raise.
ERROR_KINDS: dict[str, type[AdminError]] = {
    "unknown_job": UnknownJob,
    "ambiguous_job": AmbiguousJob,
    "refused": Refused,
    "invalid_job": InvalidJob,
    "bad_upload": BadUpload,
    "bad_argument": BadArgument,
    "not_found": NotFound,
    "denied": Denied,
    "unauthenticated": Denied,
    "too_large": BadArgument,
}
