"""Errors of the admin Session: one class per kind of refusal, each with a message a person can act on."""

from __future__ import annotations


class AdminError(Exception):
    """An admin call failed; the message says why and, where it can, what to do."""


class NotFound(AdminError):
    """What the call names is not on the server: a job (UnknownJob), a site's log of a job..."""


class UnknownJob(NotFound):
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


class Denied(AdminError):
    """The server's authorization policy refuses this admin the command ("member cannot
    submit_job"), or the admin's certificate is not accepted on the admin port."""


class Unavailable(AdminError):
    """The server cannot answer now (not running, unreachable, overloaded): try again later."""


class ServerUnreachable(Unavailable):
    """The server's admin port did not answer: it is not running, or the address is wrong."""


class Unsupported(AdminError):
    """The server does not offer this call or feature (an older flshell): the caller can do
    without it. `Session.features` says what a server offers before anything is called."""


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
