"""Who calls the admin port, what they may do, and the audit log of it all.

`Caller` is decided in exactly one place, `Authorizer.caller(context, header)`: with mutual TLS
it is the verified client certificate (CN = user, O = org, OU = role) and nothing the request
carries; without TLS (POC --insecure, tests, the embedded local federation) it is the name the
client sends, with no role, and no policy applies (everything is allowed).

`Authorizer.check(caller, command, rights, job=...)` asks the policy (provisioning.policy) for
each right, writes one audit line (allowed or denied, with the reason) and raises `Denied` on a
denial. The audit log (`<server workspace>/audit.log`) is JSON lines: one per admin command and
one per job state change.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger("flshell.server.audit")

AUDIT_FILE = "audit.log"
SUBMITTER_ORG = "submitter_org"  # the job store's `extra` key for the submitter's org


class Denied(PermissionError):
    """The policy refuses the caller this command; the message says who cannot do what."""


class Unauthenticated(PermissionError):
    """The call carries no usable admin certificate."""


@dataclass(frozen=True)
class Caller:
    user: str
    org: str | None = None
    role: str | None = None  # an admin role; None on an insecure port
    verified: bool = False  # from a certificate

    def describe(self) -> str:
        return f"{self.user} ({self.role}, {self.org})" if self.verified else self.user


class AuditLog:
    """Appends JSON lines to a file; thread-safe, one write (and flush) per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")
        self._sub: Any = None
        self._thread: threading.Thread | None = None

    def write(self, **fields: Any) -> None:
        record = {"time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=str)  # ASCII: no U+2028 & co. to split a line
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def command(self, caller: Caller, command: str, verdict: str, reason: str = "",
                job: str | None = None, **extra: Any) -> None:
        self.write(user=caller.user, org=caller.org, role=caller.role, command=command, job=job,
                   verdict=verdict, reason=reason, **extra)

    def follow_jobs(self, events: Any) -> None:
        """Write a line for every job state change the event bus publishes (job_status)."""
        self._sub = events.subscribe(maxsize=100_000, types={"job_status", "job_deleted"})
        self._thread = threading.Thread(target=self._follow, name="audit", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        sub = self._sub
        last: dict[Any, tuple[Any, str]] = {}
        while True:
            event = sub.get(timeout=1.0)  # what was queued when it closed still comes
            if event is None:
                if sub.closed:
                    return
                continue
            if event["type"] == "dropped":
                self.write(user="server", command="job_status", verdict="dropped",
                           reason=f"{event.get('count')} job events were not audited")
                continue
            status = event.get("status") if event["type"] == "job_status" else "DELETED"
            job, reason = event.get("job_id"), event.get("reason") or ""
            if last.get(job) == (status, reason):
                continue  # the same change told twice (the manager, then the runner)
            last[job] = (status, reason)
            if len(last) > 10_000:
                last.clear()
            self.write(user=event.get("submitter") or "server", org=None, role="server",
                       command="job_status", job=job, status=status, verdict=status,
                       reason=reason)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            self._file.close()


class Authorizer:
    """The admin port's authentication, authorization and audit.

    `secure`: the port runs mutual TLS; callers are their certificates. `policy`: a
    provisioning.policy.Policy (None: allow everything, as on an insecure port). `admins`: the
    project's admin names (fed_server.json); a CA-signed certificate naming anyone else is
    refused. `audit`: where every decision is written (None: nowhere)."""

    def __init__(self, policy: Any = None, secure: bool = False, audit: AuditLog | None = None,
                 admins: Iterable[str] | None = None) -> None:
        self.policy = policy
        self.secure = secure
        self.audit = audit
        self.admins = frozenset(admins) if admins is not None else None

    def caller(self, context: Any, header: dict[str, Any] | None = None) -> Caller:
        """THE place a call's identity is decided. With TLS: the peer certificate only (a
        "user" or "role" in the request is ignored). Without: the name the client sends."""
        if self.secure:
            from provisioning.identity import IdentityError, peer_identity

            try:
                ident = peer_identity(context)
            except IdentityError as e:
                raise Unauthenticated(str(e)) from None
            if not ident.is_admin:
                raise Unauthenticated(f"{ident.name} presents a {ident.role or 'role-less'} "
                                      "certificate; the admin port takes admin certificates only")
            if self.admins is not None and ident.name not in self.admins:
                raise Unauthenticated(f"{ident.name} is not an admin of this project")
            return Caller(ident.name, ident.org, ident.role, verified=True)
        user = (header or {}).get("user")
        return Caller(user if isinstance(user, str) and user.strip() else "admin")

    def check(self, caller: Caller, command: str, rights: Iterable[str], *,
              job: str | None = None, job_owner: str | None = None,
              job_owner_org: str | None = None, collection: bool = False,
              site_org: str | None = None, **extra: Any) -> str:
        """Check every right in `rights`; audit the verdict; raise Denied on the first refusal.
        `collection`: a listing (jobs, sites, events) rather than one job: an own_job / own_org
        condition lets it through (list_jobs then shows only what the caller may see)."""
        reasons = []
        for right in rights:
            ok, reason = self.allowed(caller, right, job_owner=job_owner,
                                      job_owner_org=job_owner_org, collection=collection,
                                      site_org=site_org)
            if not ok:
                if self.audit is not None:
                    self.audit.command(caller, command, "denied", reason, job=job, **extra)
                log.warning(f"denied {command} to {caller.describe()}: {reason}")
                raise Denied(reason)
            reasons.append(reason)
        if self.audit is not None:
            self.audit.command(caller, command, "allowed", "; ".join(reasons), job=job, **extra)
        return "; ".join(reasons)

    def check_sites(self, caller: Caller, command: str, right: str,
                    site_orgs: dict[str, str]) -> None:
        """One command on several sites: every site checked first, then ONE audit line, denied
        (naming the sites refused; nothing is done to any of them) or allowed; Denied raised."""
        refused = {}
        for site, org in site_orgs.items():
            ok, reason = self.allowed(caller, right, site_org=org)
            if not ok:
                refused[site] = reason
        sites = sorted(site_orgs)
        if refused:
            reason = "; ".join(f"{s}: {r}" for s, r in sorted(refused.items()))
            if self.audit is not None:
                self.audit.command(caller, command, "denied", reason, sites=sites,
                                   denied_sites=sorted(refused))
            log.warning(f"denied {command} to {caller.describe()}: {reason}")
            raise Denied(f"{command} refused (nothing was done): {reason}")
        if self.audit is not None:
            self.audit.command(caller, command, "allowed", f"{caller.role or 'admin'} may {right}",
                               sites=sites)

    def allowed(self, caller: Caller, right: str, *, job_owner: str | None = None,
                job_owner_org: str | None = None, collection: bool = False,
                site_org: str | None = None) -> tuple[bool, str]:
        if self.policy is None:
            return True, "no policy (insecure port)" if not self.secure else "no policy"
        role = caller.role or ""
        if right in ("submit_job", "byoc"):  # what is submitted (a clone too) is the caller's
            job_owner = job_owner_org = None
        if collection:
            cond = self.policy.condition(role, right)
            if cond in ("own_job", "own_org"):
                return True, f"{role} may {right} ({cond} entries)"
        return self.policy.check(role, right, user=caller.user, user_org=caller.org,
                                 job_owner=job_owner, job_owner_org=job_owner_org,
                                 site_org=site_org)

    def visible(self, caller: Caller, job: dict[str, Any]) -> bool:
        """Whether a listed job is one the caller may view."""
        if self.policy is None:
            return True
        ok, _ = self.policy.check(caller.role or "", "view", user=caller.user,
                                  user_org=caller.org, job_owner=job.get("submitter"),
                                  job_owner_org=(job.get("extra") or {}).get(SUBMITTER_ORG))
        return ok
