"""A server process: engine, job manager, the site port and the admin port, health, drain.

`ServerProcess(config).start()` binds both ports (0 = free ones), writes the real addresses to
`<workspace>/server.json` and serves until `stop()`. With a server startup kit
(`ServerProcess(config, kit=load_kit(...), policy=...)`) both ports run mutual TLS: sites and
admins present certificates of the project CA, and the policy decides every admin command.
Every admin command and job state change is written to `<workspace>/audit.log`. `drain()` is what SIGTERM does: both ports'
health turns NOT_SERVING, no new job starts, running jobs stay RUNNING in the job store (the next
server process resumes them after their last completed round), then the ports close.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from runtime.server.authz import AuditLog
from runtime.server.engine import ServerEngine
from runtime.server.job_workspace import atomic_write_text
from runtime.server.manager import JobManager

CONFIG_FILE = "config.json"  # written by `flshell poc prepare` / provisioning; optional
STATE_FILE = "server.json"  # written by a running server: its pid and real addresses

log = logging.getLogger("flshell.server")


@dataclass
class ServerConfig:
    workspace: str
    host: str = "127.0.0.1"
    fl_port: int = 0
    admin_port: int = 0
    max_jobs: int = 2
    heartbeat_interval: float = 5.0
    stale_after: float | None = None  # default: 3 heartbeat intervals
    lost_after: float | None = None  # default: 10 heartbeat intervals
    ready_timeout: float = 60.0
    insecure: bool = True
    max_model_bytes: int = 8 * 1024 ** 3  # a result announcing a bigger model is refused
    max_upload_bytes: int | None = None  # job archives (default: runtime.jobs.upload's limit)

    @classmethod
    def load(cls, workspace: str | os.PathLike[str], **overrides: Any) -> "ServerConfig":
        """`<workspace>/config.json` if there is one, then `overrides` (None = keep)."""
        ws = Path(workspace)
        values: dict[str, Any] = {}
        path = ws / CONFIG_FILE
        if path.is_file():
            try:
                values = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
            if not isinstance(values, dict):
                raise ValueError(f"{path}: expected a JSON object")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ValueError(f"{path}: unknown keys {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known - {'workspace'}))})")
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["workspace"] = str(ws)
        cfg = cls(**values)
        for name in ("fl_port", "admin_port"):
            port = getattr(cfg, name)
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"{name}: expected a port number 0-65535, got {port!r}")
        if not isinstance(cfg.max_jobs, int) or cfg.max_jobs < 1:
            raise ValueError(f"max_jobs: expected an integer >= 1, got {cfg.max_jobs!r}")
        if not cfg.heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval: expected seconds > 0, got {cfg.heartbeat_interval!r}")
        return cfg


class ServerProcess:
    def __init__(self, config: ServerConfig, kit: Any = None, policy: Any = None,
                 tap_core_log: bool = False) -> None:
        """`kit`: a verified server startup kit (provisioning.Kit): mutual TLS on both ports,
        only the project's sites and admins (its fed_server.json) let in. `policy`: the
        authorization policy (provisioning.policy.Policy) of the admin port; with a kit and no
        policy, provisioning's default one. `tap_core_log` (a process of its own, `flshell
        server`): TLS handshakes gRPC's core refuses go to the log and the audit log too
        (runtime.server.core_log; it takes over this process's stderr)."""
        self.tap_core_log = tap_core_log
        self._core_tap: Any = None
        self.config = config
        self.kit = kit
        self.policy = policy
        if kit is not None and policy is None:
            from provisioning.policy import Policy

            self.policy = Policy.default()
        self.audit: AuditLog | None = None
        self.workspace = Path(config.workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.server: Any = None  # runtime.federation.FederationServer
        self.engine: ServerEngine | None = None
        self.manager: JobManager | None = None
        self.fl_server: Any = None
        self.admin_server: Any = None
        self.draining = False

    def start(self) -> "ServerProcess":
        from runtime.federation.server import FederationServer

        c = self.config
        kit = self.kit
        tls: dict[str, Any] = {}
        if kit is not None:
            sites, admins = kit.config.get("sites"), kit.config.get("admins")
            tls = {"credentials": kit.server_credentials(), "policy": self.policy,
                   "sites": sites if isinstance(sites, list) else None,
                   "admins": admins if isinstance(admins, list) else None}
        self.server = FederationServer(
            self.workspace, heartbeat_interval=c.heartbeat_interval, monitor=True,
            stale_after=c.stale_after, lost_after=c.lost_after, max_jobs=c.max_jobs,
            ready_timeout=c.ready_timeout, host=c.host, fl_port=c.fl_port,
            admin_port=c.admin_port, audit=True, max_model_bytes=c.max_model_bytes,
            max_upload_bytes=c.max_upload_bytes, **tls)
        if self.tap_core_log and kit is not None:
            from runtime.server.core_log import CoreLogTap

            self._core_tap = CoreLogTap(self._handshake_refused).start()
        try:
            self.server.start()
        except Exception:
            self._stop_tap()
            raise
        self.engine, self.manager = self.server.engine, self.server.manager
        self.fl_server, self.admin_server = self.server.fl_server, self.server.admin_server
        self.audit = self.server.audit
        atomic_write_text(self.workspace / STATE_FILE, json.dumps({
            "pid": os.getpid(), "started_at": time.time(),
            "fl_address": self.fl_server.address, "admin_address": self.admin_server.address,
            "config": asdict(c), "secure": self.kit is not None}, indent=2))
        return self

    def _handshake_refused(self, reason: str) -> None:
        log.warning(f"refused a TLS handshake: {reason} (gRPC does not say which peer)")
        audit = self.audit
        if audit is not None:
            audit.write(user="?", command="tls_handshake", verdict="refused", reason=reason,
                        peer="unknown (gRPC's core does not report it)")

    @property
    def fl_address(self) -> str:
        return self.fl_server.address

    @property
    def admin_address(self) -> str:
        return self.admin_server.address

    def drain(self, grace: float = 2.0) -> None:
        """Stop taking work, report NOT_SERVING, let in-flight calls finish, close the ports."""
        if self.draining:
            return
        self.draining = True
        if self.server is not None:
            self.server.health_not_serving()
        self.stop(grace)

    def stop(self, grace: float = 1.0) -> None:
        """Running jobs stay RUNNING in the store: the next server on this workspace resumes
        them after their last completed round; sites back off and reconnect to it."""
        if self.server is not None:
            self.server.quiesce()
            try:
                state = self.workspace / STATE_FILE
                if state.is_file() and json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()
            except (OSError, ValueError):
                pass
            self.server.close(grace)
        self._stop_tap()

    def _stop_tap(self) -> None:
        if self._core_tap is not None:
            self._core_tap.stop()
            self._core_tap = None


def read_state(workspace: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What a running server wrote to its workspace (pid, addresses), or None."""
    try:
        return json.loads((Path(workspace) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
