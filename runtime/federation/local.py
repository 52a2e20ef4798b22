"""An embedded local federation: a server and N sites in this process, the admin port on
127.0.0.1. What `flshell` with no arguments (and `flshell tui`) opens: no setup at all.

The server side is the real one (`FederationServer`: engine with heartbeat monitor, job store,
scheduler, admin port); the sites are site agents on the in-process transport that download
their jobs from it like any site, each job's scripts on threads. Jobs persist in the workspace
across runs, like on a server.

An operator's `shutdown client SITE` stops that site's agent with a goodbye (the server sees it
DISCONNECTED at once); `restart client SITE` does the same, then starts a fresh agent of that
name and workspace, which registers again. `stop()` leaves running jobs RUNNING in the store,
to resume the next time the federation starts on this workspace.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from runtime import paths
from runtime.federation.server import FederationServer, HoldsServer


class LocalFederation(HoldsServer):
    def __init__(self, workspace: str | os.PathLike[str] | None = None, n_sites: int = 2,
                 sites: list[str] | None = None, max_jobs: int = 2, admin_port: int = 0,
                 heartbeat_interval: float = 5.0) -> None:
        names = list(sites) if sites else [f"site-{i}" for i in range(1, n_sites + 1)]
        if not names:
            raise ValueError("a local federation needs at least 1 site")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate site names in {names}")
        self.site_names = names
        self.workspace = Path(workspace or paths.default("local")).absolute()
        self.max_jobs = max_jobs
        self.admin_port = admin_port
        self.heartbeat_interval = heartbeat_interval
        self.server: FederationServer | None = None
        self.agents: list[Any] = []
        self._transport: Any = None
        self._sink: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._agents_lock = threading.Lock()
        self._stopping = False
        self._cycling: list[threading.Thread] = []  # shutdown / restart of sites under way

    @property
    def admin_address(self) -> str:
        assert self.server is not None, "call start() first"
        return self.server.admin_address

    def start(self) -> "LocalFederation":
        from runtime.client.sitelog import LogSink
        from runtime.transport.inproc import InProcTransport

        paths.ensure(self.workspace)
        self.server = FederationServer(self.workspace / "server",
                                       heartbeat_interval=self.heartbeat_interval, monitor=True,
                                       max_jobs=self.max_jobs,
                                       admin_port=self.admin_port).start()
        self._transport = InProcTransport(self.server.engine)
        self._sink = LogSink(interval=0.5)
        with self._agents_lock:
            for name in self.site_names:
                self.agents.append(self._new_agent(name))
                self.agents[-1].start(heartbeats=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # registered: jobs can be placed at once
            if all(self.engine.sites.get(n) is not None for n in self.site_names):
                break
            time.sleep(0.005)
        self._ready.set()
        return self

    def _new_agent(self, name: str) -> Any:
        """A site agent on the in-process transport (`start(heartbeats=True)` it once it is in
        `agents`: whoever sees it register finds it there)."""
        from runtime.client.agent import SiteAgent
        from runtime.client.apps import DownloadedApps

        ws = self.workspace / name
        agent = SiteAgent(name, self._transport, DownloadedApps(self._transport, name, ws), ws,
                          self._sink, info={"local": True}, poll_timeout=1.0)
        agent.on_command = lambda action: self._site_command(agent, action)
        return agent

    def _site_command(self, agent: Any, action: str) -> None:
        """An operator's shutdown / restart of `agent`'s site. Called on the agent's own poll
        thread, so the work (which joins that thread) runs on a thread of its own."""
        t = threading.Thread(target=self._cycle_site, args=(agent, action),
                             name=f"{agent.name}-{action}", daemon=True)
        with self._agents_lock:
            if self._stopping:
                return  # the whole federation is stopping anyway
            self._cycling = [c for c in self._cycling if c.is_alive()] + [t]
        t.start()

    def _cycle_site(self, agent: Any, action: str) -> None:
        agent.stop(timeout=10)  # its jobs end on the site; the goodbye makes it DISCONNECTED
        with self._agents_lock:
            if agent not in self.agents:
                return
            index = self.agents.index(agent)
            if action != "restart" or self._stopping:
                del self.agents[index]
                return
            self.agents[index] = fresh = self._new_agent(agent.name)
            fresh.start(heartbeats=True)

    def start_in_background(self) -> threading.Thread:
        """Start on a thread (the console's prompt need not wait); `wait_ready()` joins it."""
        def run() -> None:
            try:
                self.start()
            except BaseException as e:  # noqa: BLE001 - reported by wait_ready
                self._error = e
                self._ready.set()

        t = threading.Thread(target=run, name="local-federation", daemon=True)
        t.start()
        return t

    def wait_ready(self, timeout: float | None = 30.0) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the local federation did not start in {timeout}s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop the sites and the server; running jobs stay RUNNING in the store and resume
        the next time (like a server restart). To end them instead, abort them first."""
        with self._agents_lock:
            self._stopping = True
            cycling = list(self._cycling)
        for t in cycling:  # a site restarting now: let it finish, then it is stopped below
            t.join(15)
        with self._agents_lock:
            agents = list(self.agents)
        for agent in agents:
            agent.request_stop()
        if self.server is not None:
            self.server.quiesce()
        for agent in agents:
            agent.stop(timeout=3)
        if self._sink is not None:
            self._sink.close()  # the sites' last log lines go to the server first
        if self._transport is not None:
            self._transport.close()
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> "LocalFederation":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
