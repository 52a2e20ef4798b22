"""The simulator's worker processes (`flshell sim --processes`, implied by `-gpu`).

`plan_workers` decides which sites each worker hosts and which GPU group it sees; `WorkerPool`
starts the workers (`runtime.sim.worker`), waits until every site is connected or known dead,
reports a worker that dies by the sites it hosted, and stops them all at the end.
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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import runtime
from runtime.client.process_agent import describe_exit


class PlanError(ValueError):
    """Sites, workers and GPU groups that do not fit together."""


@dataclass
class Worker:
    index: int
    sites: list[str]
    gpu: str | None = None  # the GPU group it sees (CUDA_VISIBLE_DEVICES), e.g. "0" or "2,3"
    proc: subprocess.Popen | None = None
    control: socket.socket | None = None
    started_at: float = 0.0
    stderr_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    exited: threading.Event = field(default_factory=threading.Event)
    reported: bool = False  # its end was reported (once)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self) -> str:
        return f"worker {self.index} (pid {self.pid}, sites {', '.join(self.sites)})"


def plan_workers(sites: list[str], workers: int | None, gpus: list[str]) -> list[Worker]:
    """Site i runs on GPU group i mod G (as NVFlare's simulator does); worker w sees group
    w mod G, and a group's sites go round-robin over that group's workers. Without GPUs, site i
    goes to worker i mod T. T defaults to G with GPUs, else to min(N, CPU count); workers
    left without a site are not started."""
    n = len(sites)
    if gpus:
        t = workers or len(gpus)
        if t < len(gpus):
            raise PlanError(f"-t {t}: fewer workers than the {len(gpus)} GPU groups of -gpu; "
                            f"each group needs one (use -t {len(gpus)} or more)")
    else:
        t = workers or min(n, os.cpu_count() or 1)
    t = max(1, min(t, n)) if not gpus else t
    plan = [Worker(w, [], gpus[w % len(gpus)] if gpus else None) for w in range(t)]
    if gpus:
        by_group = [[w for w in plan if w.index % len(gpus) == g] for g in range(len(gpus))]
        for i, site in enumerate(sites):
            group = by_group[i % len(gpus)]
            group[(i // len(gpus)) % len(group)].sites.append(site)
    else:
        for i, site in enumerate(sites):
            plan[i % t].sites.append(site)
    used = [w for w in plan if w.sites]
    for k, w in enumerate(used):
        w.index = k + 1  # numbered as the user sees them: worker 1..T
    return used


def cpu_share(workers: int) -> int:
    """Threads per worker when `workers` workers share this host's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class WorkerPool:
    """Starts the planned workers against `server_address`; `on_exit(worker, why)` is called
    (on a watcher thread) when one ends before `stop()`."""

    def __init__(self, workers: list[Worker], server_address: str,
                 workspace: Path, site_info: dict[str, dict[str, Any]],
                 on_exit: Callable[[Worker, str], None], end_grace: float = 10.0) -> None:
        self.workers = workers
        self.server_address = server_address
        self.workspace = Path(workspace)
        self.site_info = site_info
        self.on_exit = on_exit
        self.end_grace = end_grace
        self.stopping = False
        self.logs = self.workspace / "workers"

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for w in self.workers:
            self._spawn(w)

    def _spawn(self, w: Worker) -> None:
        mine, theirs = socket.socketpair()
        info = {s: self.site_info.get(s, {}) for s in w.sites}
        cmd = [sys.executable, "-m", "runtime.sim.worker", "--server", self.server_address,
               "--workspace", str(self.workspace),
               "--sites", ",".join(w.sites), "--info", json.dumps(info),
               "--end-grace", str(self.end_grace), "--control-fd", str(theirs.fileno())]
        env = dict(os.environ)
        root = str(Path(runtime.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # T workers share the host's cores: unless the user chose, each gets its share of
        # threads for torch/numpy (as torchrun does), not one per core each
        env.setdefault("OMP_NUM_THREADS", str(cpu_share(len(self.workers))))
        if w.gpu is not None:
            cmd += ["--gpu", w.gpu]
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's numbering = nvidia-smi's = NVML's
            env["CUDA_VISIBLE_DEVICES"] = w.gpu
        try:
            with open(self.logs / f"worker-{w.index}.log", "ab") as log:
                w.proc = subprocess.Popen(  # in the workspace: stray files stay there
                    cmd, cwd=self.workspace, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.PIPE,
                    pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as e:
            mine.close()
            w.stderr_tail.append(f"could not start: {e}")
            w.exited.set()
            self._report(w, f"{w.describe()} could not start: {e}")
            return
        finally:
            theirs.close()
        w.control = mine
        w.started_at = time.monotonic()
        threading.Thread(target=self._watch, args=(w,), name=f"worker-{w.index}-watch",
                         daemon=True).start()

    def _watch(self, w: Worker) -> None:
        assert w.proc is not None and w.proc.stderr is not None
        with open(self.logs / f"worker-{w.index}.log", "ab", buffering=0) as log:
            for raw in iter(w.proc.stderr.readline, b""):
                log.write(raw)
                w.stderr_tail.append(raw.decode(errors="replace").rstrip("\n"))
        code = w.proc.wait()
        w.exited.set()
        if self.stopping and code in (0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL):
            return
        why = f"{w.describe()} {describe_exit(code)}"
        tail = [line for line in w.stderr_tail if line.strip()][-5:]
        if tail:
            why += "; last lines of its stderr:\n" + "\n".join(tail)
        self._report(w, why)

    def _report(self, w: Worker, why: str) -> None:
        if not w.reported:
            w.reported = True
            self.on_exit(w, why)

    def wait_connected(self, connected: Callable[[str], bool], stall_timeout: float,
                       progress: Callable[[int, int], None] | None = None) -> None:
        """Wait until each site is connected or its worker has ended. No fixed deadline: as
        long as sites keep connecting the wait goes on (a loaded host is slow, not broken);
        `stall_timeout` seconds without a new site ends it, and the workers whose sites are
        still missing are stopped (and reported through `on_exit`)."""
        sites = [s for w in self.workers for s in w.sites]
        last_count, last_change = -1, time.monotonic()
        while True:
            up = [s for s in sites if connected(s)]
            pending = [w for w in self.workers if not w.exited.is_set()
                       and not all(connected(s) for s in w.sites)]
            if len(up) != last_count:
                last_count, last_change = len(up), time.monotonic()
                if progress is not None:
                    progress(len(up), len(sites))
            if not pending:
                break
            if time.monotonic() - last_change > stall_timeout:
                for w in pending:
                    why = (f"{w.describe()}: its sites did not connect within "
                           f"{stall_timeout:g}s of the last site that did; stopped")
                    self._report(w, why)
                    self._kill(w)
                break
            time.sleep(0.05)

    def _kill(self, w: Worker) -> None:
        """SIGKILL the worker's process group: the worker and whatever it started."""
        if w.proc is None:
            return
        try:
            os.killpg(w.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, quick: bool = False) -> None:
        """SIGTERM every worker (its sites end their job, flush logs, say goodbye), or with
        `quick` (the job was aborted or failed) SIGINT (the same without waiting for scripts);
        SIGKILL what is left after a grace period, with anything it started."""
        self.stopping = True
        grace = 3.0 if quick else self.end_grace + 5
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                try:
                    w.proc.send_signal(signal.SIGINT if quick else signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._kill(w)  # the worker's group: scripts it started go too
            w.proc.wait()
            if w.control is not None:
                w.control.close()
                w.control = None
