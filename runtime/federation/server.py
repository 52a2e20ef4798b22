"""The server side of every federation, built in one place: engine (sites, tasks, heartbeats),
job manager (store, scheduler, runners), and, when asked, the gRPC site port and the admin port.

`flshell server`, the embedded console's federation, POC and the simulator are thin callers of
`FederationServer`: a job is submitted, scheduled, deployed, run and stored by the same code
wherever it runs; what differs is only how the sites reach the engine (in-process calls, gRPC on
loopback, gRPC over the network) and where they run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from runtime.server.authz import AUDIT_FILE, AuditLog
from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager

log = logging.getLogger("flshell.server")


class FederationServer:
    """`start()`, then `quiesce()` (no new work, running jobs left to resume, site polls woken)
    and `close()` (ports down, store and workspace released); `stop()` does both.

    Args:
        workspace: the server workspace (job store, jobs/, audit.log); held by this server
            until close() (a second server on it is refused).
        fl_port / admin_port: serve the site port / the admin port on `host` (0: a free port);
            None: not served (in-process sites; a simulation nobody attaches to).
        credentials, sites, admins, policy: mutual TLS on both ports with the project's sites
            and admins only, and the admin authorization policy (a server startup kit's).
        audit: write every admin command and job state change to WORKSPACE/audit.log.
        monitor: mark silent sites STALE, then LOST (off where sites cannot go silent).
        resume_unfinished: resume the jobs a previous server left RUNNING (a simulation ends
            such leftovers FAILED instead: its jobs do not outlive it).
    """

    def __init__(
        self,
        workspace: str | Path,
        *,
        heartbeat_interval: float = 5.0,
        monitor: bool = True,
        stale_after: float | None = None,
        lost_after: float | None = None,
        max_jobs: int = 2,
        ready_timeout: float = 60.0,
        schedule_interval: float = 0.5,
        host: str = "127.0.0.1",
        fl_port: int | None = None,
        admin_port: int | None = None,
        credentials: Any = None,
        sites: list[str] | None = None,
        admins: list[str] | None = None,
        policy: Any = None,
        audit: bool = False,
        max_model_bytes: int | None = None,
        max_upload_bytes: int | None = None,
        resume_unfinished: bool = True,
    ) -> None:
        self.workspace = Path(workspace)
        self.options = dict(heartbeat_interval=heartbeat_interval, monitor=monitor,
                            stale_after=stale_after, lost_after=lost_after)
        self.manager_options = dict(max_jobs=max_jobs, ready_timeout=ready_timeout,
                                    schedule_interval=schedule_interval)
        self.host, self.fl_port, self.admin_port = host, fl_port, admin_port
        self.credentials, self.site_names, self.admin_names = credentials, sites, admins
        self.policy, self.audit_on = policy, audit
        self.max_model_bytes, self.max_upload_bytes = max_model_bytes, max_upload_bytes
        self.resume_unfinished = resume_unfinished
        self.engine: ServerEngine | None = None
        self.manager: JobManager | None = None
        self.audit: AuditLog | None = None
        self.fl_server: Any = None
        self.admin_server: Any = None
        self._closed = False

    # ---- addresses ---------------------------------------------------------------------------

    @property
    def fl_address(self) -> str:
        return self.fl_server.address if self.fl_server is not None else "in-process"

    @property
    def admin_address(self) -> str:
        if self.admin_server is None:
            raise RuntimeError("this federation serves no admin port (admin_port=None)")
        return self.admin_server.address

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FederationServer":
        self.engine = ServerEngine(self.workspace, **self.options)
        try:
            self.manager = JobManager(self.engine, **self.manager_options)
            if self.audit_on:
                self.audit = AuditLog(self.workspace / AUDIT_FILE)
                self.audit.follow_jobs(self.engine.events)
            if self.fl_port is not None:
                from runtime.transport.grpc_server import FLServer

                kw: dict[str, Any] = {}
                if self.max_model_bytes is not None:
                    kw["max_model_bytes"] = self.max_model_bytes
                self.fl_server = FLServer(self.engine, self.host, self.fl_port,
                                          credentials=self.credentials, sites=self.site_names,
                                          **kw).start()
            if self.admin_port is not None:
                from runtime.server.admin_service import AdminServer

                kw = {"max_upload_bytes": self.max_upload_bytes} if self.max_upload_bytes else {}
                self.admin_server = AdminServer(self.manager, self.host, self.admin_port,
                                                credentials=self.credentials, policy=self.policy,
                                                audit=self.audit, admins=self.admin_names,
                                                **kw).start()
        except Exception:
            self.stop()
            raise
        self.manager.addresses = {"fl": self.fl_address}
        if self.admin_server is not None:
            self.manager.addresses["admin"] = self.admin_server.address
        self.manager.start(resume=self.resume_unfinished)
        return self

    def health_not_serving(self) -> None:
        """Both ports say NOT_SERVING (a draining server): in-flight calls still finish."""
        for server in (self.fl_server, self.admin_server):
            health = getattr(server, "health", None)
            if health is not None:
                health.not_serving()

    def quiesce(self) -> None:
        """Start no job, leave running ones RUNNING in the store (a server started on this
        workspace resumes them after their last round), wake every site poll."""
        if self.manager is not None:
            self.manager.stop()
            self.manager.detach_running()
        if self.engine is not None:  # site loops notice the server is going away
            self.engine.close(release_workspace=False)

    def close(self, grace: float = 0.5) -> None:
        if self._closed:
            return
        self._closed = True
        for server in (self.admin_server, self.fl_server):
            if server is not None:
                server.stop(grace)
        if self.manager is not None:
            self.manager.flush_logs()  # the sites' last shipped lines are on disk first
            self.manager.store.close()
        if self.audit is not None:
            self.audit.close()
        if self.engine is not None:
            self.engine.workspace_lock.release()  # last: the next server may have it now

    def stop(self, grace: float = 0.5) -> None:
        self.quiesce()
        self.close(grace)

    def __enter__(self) -> "FederationServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HoldsServer:
    """What a federation that owns a `FederationServer` (`self.server`) shows of it: the
    engine, the job manager and the admin port, None before it starts."""

    server: FederationServer | None = None

    @property
    def engine(self) -> ServerEngine | None:
        return self.server.engine if self.server is not None else None

    @property
    def manager(self) -> JobManager | None:
        return self.server.manager if self.server is not None else None

    @property
    def admin_server(self) -> Any:
        return self.server.admin_server if self.server is not None else None

    @admin_server.setter
    def admin_server(self, server: Any) -> None:  # (a test restarts the port in place)
        assert self.server is not None
        self.server.admin_server = server
