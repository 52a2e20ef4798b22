"""A site agent that runs each job in a child process of its own (`flshell client`).

The agent registers with `job_processes` in its info, so the server queues a job's tasks in that
job's own inbox, which the child (`runtime.client.job_process`) polls. The agent fetches and
unpacks each job, starts its child, watches it, and ends it: a child that dies before the server
ended its job fails the site's tasks of that job with the exit code or signal and the tail of its
stderr, and the agent goes on to the next job. Children never outlive the agent: each holds a
control socket to it and kills itself (and its process group) when the socket closes.

While a job lives on the server but no child serves it here (the child died, could not start,
or the agent restarted), a *tombstone* polls the job's inbox and fails each task at once with the
reason, so rounds go on or fail instead of waiting on a task nobody will run.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import runtime
from runtime.client import job_process
from runtime.client.agent import SiteAgent
from runtime.client.apps import DownloadedApps
from runtime.client.backoff import Backoff
from runtime.client.sitelog import LogSink
from runtime.jobs import JobError
from runtime.jobs.upload import has_custom_code
from runtime.resources import GpuAllocator, GpuInventory, GpuRequest, NotPlaceable, detect_gpus
from runtime.resources import parse_resource_spec, request_for
from runtime.transport.base import (
    JobEnd,
    JobStart,
    JobState,
    SiteCommand,
    SiteMessage,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
)

class PolicyVeto(Exception):
    """The site's local policy refuses the job (e.g. no custom code); the message says why."""


GPU_INFO = ("gpu_inventory", "gpu_alloc")  # what the agent says of its GPUs; not for the children
MARKER = "process.json"  # in jobs/<id>/ while a child of this site may run that job
STDERR_TAIL = 20  # lines of a dead child's stderr reported with its failure


@dataclass
class JobChild:
    """One job's child process, as its agent sees it."""

    job_id: str
    job_name: str
    job_dir: Path
    proc: subprocess.Popen | None = None
    control: socket.socket | None = None
    stderr_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL))
    end_status: str | None = None  # set when the server ended the job
    ended: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    pump: threading.Thread | None = None
    killed_by: str | None = None  # set when this agent signalled it: who and why

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


@dataclass
class Tombstone:
    """Fails the tasks of a job no process serves here; `cancel` makes way for a new process."""

    stop: threading.Event = field(default_factory=threading.Event)  # the job ended: drain, go
    cancel: threading.Event = field(default_factory=threading.Event)  # the job starts again here
    done: threading.Event = field(default_factory=threading.Event)


class ProcessSiteAgent(SiteAgent):
    """`start(heartbeats=True)` registers (with retry and backoff), polls, heartbeats with the
    running jobs and their child pids; `stop()` ends the children, then says goodbye."""

    def __init__(
        self,
        name: str,
        transport: SiteTransport,
        workspace: str | Path,
        log_sink: LogSink,
        server_address: str,
        tls: job_process.TlsFiles | None = None,
        info: dict[str, Any] | None = None,
        poll_timeout: float = 1.0,
        heartbeat_interval: float | None = None,
        end_grace: float = 5.0,
        abort_grace: float = 0.4,
        on_registered: Callable[[], None] | None = None,
        allow_custom_code: bool = True,
        gpus: GpuInventory | None = None,
    ) -> None:
        """`allow_custom_code` False (the site's local/site_policy.json): a job that brings its
        own code (a .py file under custom/) is refused here: reported FAILED, with the reason.
        `gpus`: the GPUs this site offers its jobs (default: NVML's, none without it); a job
        whose meta.json resource_spec asks this site for GPUs gets its own, pinned with
        CUDA_VISIBLE_DEVICES, from its start until its process is gone."""
        self.gpus = GpuAllocator(detect_gpus() if gpus is None else gpus)
        super().__init__(name, transport, DownloadedApps(transport, name, workspace), workspace,
                         log_sink, info={**(info or {}), "job_processes": True,
                                         "gpu_inventory": self.gpus.inventory.to_info(),
                                         "gpu_alloc": {}},
                         poll_timeout=poll_timeout)
        self.server_address = server_address
        self.tls = tls
        self.fixed_heartbeat = heartbeat_interval
        if heartbeat_interval is not None:
            self.heartbeat_interval = heartbeat_interval
        self.end_grace = end_grace  # a completed job's child gets this long to exit by itself
        self.abort_grace = abort_grace  # an aborted one's this long, then SIGTERM, then SIGKILL
        self.on_registered = on_registered
        self.allow_custom_code = allow_custom_code
        self.children: dict[str, JobChild] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._restarts: dict[str, JobChild] = {}  # a job started again while its old process ends
        self._ended_here: collections.deque[str] = collections.deque(maxlen=256)  # took their JobEnd
        self._lock = threading.Lock()
        self._ever_registered = False

    # ---- registration, heartbeats ------------------------------------------------------------

    def register(self) -> None:
        forgotten = self._ever_registered  # registering again: the server lost track of us
        self.info["gpu_alloc"] = self.gpus.holders()
        super().register()
        if self.fixed_heartbeat is not None:
            self.heartbeat_interval = self.fixed_heartbeat
        if forgotten:
            self.logger.warning(f"{self.name} registered again: the server forgot its jobs; "
                                "ending their processes")
            # marked ended now, before the poll loop takes the server's next message: a job it
            # resumes is started again here once its old process is gone (see _on_job_start)
            ending = self._mark_all_ended()
            threading.Thread(target=self._end_children, args=(ending, 3.0, "the server forgot its jobs"),
                             daemon=True).start()
            return
        self._ever_registered = True
        self._recover_leftovers()
        if self.on_registered is not None:
            self.on_registered()

    def heartbeat_info(self) -> dict[str, Any]:
        with self._lock:
            pids = {j: c.pid for j, c in self.children.items()}
        return {"jobs": sorted(pids), "job_pids": pids,
                "gpu_inventory": self.gpus.inventory.to_info(), "gpu_alloc": self.gpus.holders()}

    @property
    def busy(self) -> bool:
        return bool(self.children)

    # ---- messages ----------------------------------------------------------------------------

    def handle(self, msg: SiteMessage) -> None:
        """Never blocks the poll loop: fetching, spawning and reaping run on threads of their own."""
        if isinstance(msg, JobStart):
            self._on_job_start(msg)
        elif isinstance(msg, JobEnd):
            self._on_job_end(msg)
        elif isinstance(msg, SiteCommand):
            self.command(msg.action)
        elif isinstance(msg, TaskAssignment):  # a server that does not route tasks per job
            self._fail_task(msg, f"{self.name} runs jobs in processes, but task "
                                 f"'{msg.task_name}' came to the site's inbox, not the job's")

    def _on_job_start(self, msg: JobStart) -> None:
        child = JobChild(msg.job_id, msg.job_name, self.workspace / "jobs" / msg.job_id)
        with self._lock:  # known before the next message: its JobEnd may come right after
            if self._stop.is_set() or msg.job_id in self._restarts:
                return
            old = self.children.get(msg.job_id)
            tomb = self._tombstones.get(msg.job_id)
            if old is not None and not old.ended.is_set():
                self.logger.info(f"job {msg.job_id} runs here already (process {old.pid})")
                return
            if old is None and tomb is None:
                self.children[msg.job_id] = child
                target, args = self._launch, (msg, child)
            else:  # e.g. a restarted server resumes a job whose old process is still ending
                self._restarts[msg.job_id] = child
                target, args = self._relaunch, (msg, child, old)
        threading.Thread(target=target, args=args, name=f"{self.name}-launch", daemon=True).start()

    def _relaunch(self, msg: JobStart, child: JobChild, old: JobChild | None) -> None:
        """Start `msg`'s job again once its old process has exited and no tombstone serves it."""
        if old is not None and old.proc is not None and not old.exited.wait(self.end_grace + 10):
            self.logger.warning(f"job {msg.job_id} process {old.pid} still runs: killing it")
            _kill_group(old.proc.pid)
            old.exited.wait(10.0)
        while True:
            with self._lock:
                tomb = self._tombstones.get(msg.job_id)
                if tomb is None:
                    self._restarts.pop(msg.job_id, None)
                    if self._stop.is_set():
                        return
                    self.children[msg.job_id] = child
                    break
            tomb.cancel.set()  # its poll returns within poll_timeout; no task of the new
            tomb.done.wait(self.poll_timeout + 30)  # run is queued before the new one is READY
        self.logger.info(f"job {msg.job_id} starts again here (its previous process has ended)")
        self._launch(msg, child)

    def _launch(self, msg: JobStart, child: JobChild) -> None:
        try:
            app = self.app_source(msg)
            if not self.allow_custom_code and has_custom_code(app.root.parent):
                raise PolicyVeto(f"{self.name} does not allow custom code (local/site_policy.json)")
            if not child.ended.is_set():
                gpus = self._allocate_gpus(child, app.root)
                self._spawn(child, msg, app.root, gpus)
        except Exception as e:  # noqa: BLE001 - reported to the server, the site stays up
            with self._lock:
                self.children.pop(msg.job_id, None)
            self.gpus.release(msg.job_id)
            if isinstance(e, NotPlaceable):
                detail = f"{self.name} {e.reason}"
            elif isinstance(e, (JobError, TransportError, OSError, PolicyVeto)):
                detail = str(e)
            else:
                detail = traceback.format_exc()
            detail = f"job {msg.job_id} could not start on {self.name}: {detail}"
            self.logger.error(detail)
            self._report_failed(msg.job_id, detail)
            self._tombstone(msg.job_id, detail, ended=child.ended.is_set())
            return
        if child.proc is None:  # the job ended while its app was fetched
            with self._lock:
                self.children.pop(msg.job_id, None)
            self.gpus.release(msg.job_id)
            self._tombstone(msg.job_id, "the job ended", ended=True)
            return
        gpus = self.gpus.holders().get(msg.job_id)
        self.logger.info(f"job {msg.job_id} ({msg.job_name}) started in process {child.pid}"
                         + (f" on GPU(s) {','.join(map(str, gpus))}" if gpus else ""))

    def _allocate_gpus(self, child: JobChild, app_folder: Path) -> list[int] | None:
        """The GPUs the job's resource_spec asks of this site, now held for it; None when it
        asks for none (its process keeps the agent's CUDA_VISIBLE_DEVICES)."""
        req = _gpu_request(app_folder, self.name)
        if req is None:
            return None

        def ending(holders: list[str]) -> bool:  # their jobs ended: their GPUs free up soon
            with self._lock:
                return any(c.ended.is_set() for j, c in self.children.items() if j in holders)

        # The server sends a job when its view says the GPUs are free; a child whose job just
        # ended may still hold them here until it exits (at most its reap grace).
        return self.gpus.allocate(child.job_id, req.num, req.mem_gib, wait_while=ending,
                                  timeout=self.end_grace + 10.0)

    def _spawn(self, child: JobChild, msg: JobStart, app_folder: Path,
               gpus: list[int] | None = None) -> None:
        child.job_dir.mkdir(parents=True, exist_ok=True)
        mine, theirs = socket.socketpair()
        info = {k: v for k, v in self.info.items() if k != "job_processes" and k not in GPU_INFO}
        if gpus is not None:
            info["gpu"] = ",".join(map(str, gpus))
        cmd = [sys.executable, "-m", "runtime.client.job_process",
               "--server", self.server_address, "--site", self.name, "--job-id", msg.job_id,
               "--job-name", msg.job_name, "--app-name", msg.app_name,
               "--app-folder", str(app_folder), "--workspace", str(self.workspace.resolve()),
               "--info", json.dumps(info), "--poll-timeout", str(self.poll_timeout),
               "--end-grace", str(self.end_grace), "--control-fd", str(theirs.fileno())]
        if self.tls is not None:
            cmd += ["--tls-root", str(self.tls.root_ca), "--tls-cert", str(self.tls.cert),
                    "--tls-key", str(self.tls.key)]
        env = dict(os.environ)  # the child runs the same runtime as this agent
        root = str(Path(runtime.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        if gpus is not None:  # NVML's numbering, which is the PCI bus order
            env.update(CUDA_VISIBLE_DEVICES=info["gpu"], CUDA_DEVICE_ORDER="PCI_BUS_ID")
        try:
            with open(child.job_dir / "log.txt", "ab") as log:
                child.proc = subprocess.Popen(
                    cmd, cwd=child.job_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        child.control = mine
        _write_marker(child.job_dir, child.proc.pid, msg.job_name)
        child.pump = threading.Thread(target=_pump_stderr, args=(child,), daemon=True)
        child.pump.start()
        threading.Thread(target=self._watch, args=(child,), name=f"{self.name}-watch",
                         daemon=True).start()
        if child.ended.is_set():  # the job ended while we fetched and spawned
            self._reap(child, 0.0)

    def _watch(self, child: JobChild) -> None:
        """Wait for the child; if it died before the job ended, fail the job's tasks here."""
        assert child.proc is not None and child.control is not None
        code = child.proc.wait()
        _kill_group(child.proc.pid)  # whatever it started in its group goes with it
        if child.pump is not None:
            child.pump.join(2.0)
        said = _drain(child.control)
        child.control.close()
        freed = self.gpus.release(child.job_id)
        if freed:
            self.logger.info(f"job {child.job_id} freed GPU(s) {','.join(map(str, freed))}")
            self._report_gpus()
        if code == 0 and job_process.ENDED in said:
            self._ended_here.append(child.job_id)
            _remove_marker(child.job_dir)
            self.logger.info(f"job {child.job_id} process {child.pid} exited")
            self._retire(child, None)
        elif self._stop.is_set() or child.ended.is_set():
            _remove_marker(child.job_dir)
            self.logger.info(f"job {child.job_id} process {child.pid} ended "
                             f"({describe_exit(code, child.killed_by)})")
            self._retire(child, "the job ended", ended=True)  # take its JobEnd, if left
        elif code == 0 and job_process.REPORTED in said:  # it could not start, and said so
            self._retire(child, f"job {child.job_id} could not start on {self.name}")
        else:
            detail = f"job process of {self.name} {describe_exit(code, child.killed_by)}"
            tail = "\n".join(child.stderr_tail)
            detail += f" (pid {child.pid}); last lines of its stderr:\n{tail}" if tail \
                else f" (pid {child.pid}); it wrote nothing to stderr"
            self.logger.error(f"job {child.job_id}: {detail}")
            self._report_failed(child.job_id, detail)
            self._retire(child, detail)
        child.exited.set()

    def _retire(self, child: JobChild, reason: str | None, ended: bool = False) -> None:
        """`child` is gone: forget it and, with a `reason`, put a tombstone in its place, in one
        step under the lock, so a JobStart of the same job sees one or the other, never neither."""
        with self._lock:
            if self.children.get(child.job_id) is child:
                del self.children[child.job_id]
            tomb = self._new_tombstone(child.job_id, ended) if reason is not None else None
        if tomb is not None:
            self._start_tombstone(child.job_id, reason, tomb)

    def _on_job_end(self, msg: JobEnd) -> None:
        with self._lock:
            child = self.children.get(msg.job_id)
            tomb = self._tombstones.get(msg.job_id)
            pending = self._restarts.get(msg.job_id)
        if pending is not None:  # the job ended before its new process started: none starts
            pending.end_status = msg.status
            pending.ended.set()
        if tomb is not None:
            tomb.stop.set()
        if child is None:
            if tomb is None and pending is None and msg.job_id not in self._ended_here:
                # e.g. it ended while we were away
                _remove_marker(self.workspace / "jobs" / msg.job_id)
                self._tombstone(msg.job_id, "the job ended", ended=True)  # take the child's copy
            return
        child.end_status = msg.status
        child.ended.set()
        grace = self.end_grace + 2.0 if msg.status == "COMPLETED" else self.abort_grace
        threading.Thread(target=self._reap, args=(child, grace), daemon=True).start()

    def _reap(self, child: JobChild, grace: float) -> None:
        """Give the child `grace` seconds to exit, then SIGTERM, then SIGKILL its group."""
        if child.proc is None or child.exited.wait(grace):
            return
        for sig, wait in ((signal.SIGTERM, 0.25), (signal.SIGKILL, 5.0)):
            if child.proc.poll() is None:
                self.logger.warning(f"job {child.job_id} process {child.pid}: sending {sig.name}")
                child.killed_by = f"{self.name}'s agent ({sig.name} after the job ended)"
                _kill_group(child.proc.pid, sig)
            if child.exited.wait(wait):
                return

    # ---- tombstones: a job the server runs here that no process serves -----------------------

    def _tombstone(self, job_id: str, reason: str, ended: bool = False) -> None:
        """Fail the tasks of `job_id` until its JobEnd; with `ended`, only take what is queued.
        Not while a process of the job runs here or is about to start."""
        with self._lock:
            tomb = self._new_tombstone(job_id, ended)
        if tomb is not None:
            self._start_tombstone(job_id, reason, tomb)

    def _new_tombstone(self, job_id: str, ended: bool) -> Tombstone | None:
        """(under the lock) a tombstone for `job_id`, registered, or None if none is due."""
        if (job_id in self._tombstones or job_id in self.children or job_id in self._restarts
                or self._stop.is_set()):
            return None
        tomb = self._tombstones[job_id] = Tombstone()
        if ended:
            tomb.stop.set()
        return tomb

    def _start_tombstone(self, job_id: str, reason: str, tomb: Tombstone) -> None:
        threading.Thread(target=self._serve_tombstone, args=(job_id, reason, tomb),
                         name=f"{self.name}-tombstone", daemon=True).start()

    def _serve_tombstone(self, job_id: str, reason: str, tomb: Tombstone) -> None:
        backoff = Backoff()
        stop = tomb.stop
        try:
            while not (self._stop.is_set() or tomb.cancel.is_set()):
                try:  # once told the job ended, only take what is already queued
                    msg = self.transport.poll(self.name, 0 if stop.is_set() else self.poll_timeout,
                                              job_id=job_id)
                    backoff.reset()
                except TransportError:
                    if stop.is_set() or self._stop.wait(backoff.delay()):
                        return
                    continue
                if isinstance(msg, TaskAssignment):
                    self._fail_task(msg, f"{reason}\n(task '{msg.task_name}' was not run)",
                                    quiet=True)
                elif isinstance(msg, JobEnd) or (msg is None and stop.is_set()):
                    return
        finally:
            with self._lock:
                if self._tombstones.get(job_id) is tomb:
                    del self._tombstones[job_id]
            if not (self._stop.is_set() or tomb.cancel.is_set()):
                _remove_marker(self.workspace / "jobs" / job_id)
            tomb.done.set()

    def _recover_leftovers(self) -> None:
        """Jobs whose child this site ran before it restarted: make sure those processes are
        gone, tell the server, and fail what it still sends them."""
        for marker in sorted((self.workspace / "jobs").glob(f"*/{MARKER}")):
            job_id = marker.parent.name
            try:
                pid = int(json.loads(marker.read_text()).get("pid"))
            except (OSError, ValueError, TypeError, AttributeError):
                pid = None
            if pid is not None and _is_job_process(pid, job_id):
                _kill_group(pid)
            detail = (f"{self.name} restarted: its process for job {job_id} (pid {pid}) "
                      "was lost with the previous site agent")
            self.logger.warning(detail)
            self._report_failed(job_id, detail)
            self._tombstone(job_id, detail)

    # ---- stopping ----------------------------------------------------------------------------

    def _end_everything(self, timeout: float, why: str = "the site stops") -> None:
        self._end_children(self._mark_all_ended(), timeout, why)

    def _mark_all_ended(self) -> list[JobChild]:
        """Every job here has ended (its tombstone drains and goes); returns their children."""
        with self._lock:
            children = list(self.children.values())
            tombs = list(self._tombstones.values())
            for tomb in tombs:
                tomb.stop.set()
            for child in children:
                child.ended.set()
        return children

    def _end_children(self, children: list[JobChild], timeout: float, why: str) -> None:
        """SIGTERM each child's group, then SIGKILL what is left after `timeout` seconds."""
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.killed_by = f"{self.name}'s agent (SIGTERM: {why})"
                _kill_group(child.proc.pid, signal.SIGTERM)
        for child in children:
            if child.proc is not None and not child.exited.wait(timeout):
                child.killed_by = f"{self.name}'s agent (SIGKILL: {why})"
                _kill_group(child.proc.pid, signal.SIGKILL)
                child.exited.wait(5.0)

    def stop(self, timeout: float = 10.0) -> None:
        """End the children (SIGTERM, then SIGKILL after `timeout`/3), then say goodbye."""
        self._stop.set()
        self._end_everything(max(0.5, timeout / 3))
        try:
            self.transport.goodbye(self.name)
        except TransportError:
            pass
        self.transport.close()  # ends the poll in flight now, not when its timeout runs out
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.logger.info(f"{self.name} stopped")

    # ---- helpers -----------------------------------------------------------------------------

    def _report_gpus(self) -> None:
        """Tell the server now, not at the next heartbeat, that GPUs were freed: a job waiting
        for them starts that much sooner (heartbeat info merges into what the server holds)."""
        if not self.registered or self._stop.is_set():
            return
        try:
            self.transport.heartbeat(self.name, self.heartbeat_info())
        except TransportError as e:
            self.logger.warning(f"could not report freed GPUs: {e}")

    def _report_failed(self, job_id: str, detail: str) -> None:
        try:
            self.report_job(job_id, JobState.FAILED, detail)
        except TransportError as e:
            self.logger.warning(f"could not report job {job_id} failed: {e}")

    def _fail_task(self, msg: TaskAssignment, error: str, quiet: bool = False) -> None:
        """Answer a task we cannot run with `error`; `quiet`: the server may have settled it
        already (a site's failure report fails its pending tasks, their assignments stay queued)."""
        try:
            self.transport.submit_result(TaskResult(msg.task_id, msg.job_id, self.name, False,
                                                    None, error))
        except TransportError as e:
            if not (quiet and "not expected" in str(e)):
                self.logger.warning(f"task {msg.task_id} could not be failed: {e}")


def _gpu_request(app_folder: Path, site: str) -> GpuRequest | None:
    """What the job's meta.json resource_spec asks of `site` (the job folder holds the app's
    folder); None for no GPU, or for an app without a job folder around it."""
    meta = app_folder.parent / "meta.json"
    if not meta.is_file():
        return None
    try:
        spec = json.loads(meta.read_text(encoding="utf-8-sig")).get("resource_spec") or {}
        return request_for(parse_resource_spec(spec), site)
    except (OSError, ValueError, AttributeError) as e:  # load_job checked it: seldom seen
        raise JobError("meta.json", "resource_spec", str(e)) from None


def describe_exit(code: int, killed_by: str | None = None) -> str:
    """How a process ended, in words: 'exited with code 3', 'was killed by SIGKILL (...)';
    `killed_by`: who sent the signal when we know (else a SIGKILL may be the OOM killer's)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if killed_by is not None:
        return f"was killed by {name}, sent by {killed_by}"
    return f"was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")


def _pump_stderr(child: JobChild) -> None:
    """The child's stderr: appended to its job log, the last lines kept for a failure report."""
    assert child.proc is not None and child.proc.stderr is not None
    with open(child.job_dir / "log.txt", "ab", buffering=0) as log:
        for raw in iter(child.proc.stderr.readline, b""):
            log.write(raw)
            child.stderr_tail.append(raw.decode(errors="replace").rstrip("\n"))
    child.proc.stderr.close()


def _drain(sock: socket.socket) -> bytes:
    """What the child wrote on the control socket before it exited."""
    sock.setblocking(False)
    out = b""
    try:
        while chunk := sock.recv(256):
            out += chunk
    except OSError:
        pass
    return out


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _is_job_process(pid: int, job_id: str) -> bool:
    """Whether `pid` is still a job process of `job_id` (not a recycled pid)."""
    try:
        import psutil

        cmd = psutil.Process(pid).cmdline()
    except Exception:  # noqa: BLE001 - gone, a zombie, or not ours to see
        return False
    return "runtime.client.job_process" in cmd and job_id in cmd


def _write_marker(job_dir: Path, pid: int, job_name: str) -> None:
    (job_dir / MARKER).write_text(json.dumps({"pid": pid, "job_name": job_name}) + "\n")


def _remove_marker(job_dir: Path) -> None:
    try:
        (job_dir / MARKER).unlink()
    except FileNotFoundError:
        pass
