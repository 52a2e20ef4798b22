"""Host load from psutil and per-GPU load from NVML; a host without GPUs reports none."""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping

PARENT_DEPTH = 8  # parents walked from a GPU process to find the job process it descends from

_lock = threading.Lock()
_nvml_state: dict[str, Any] = {"tried": False, "ok": False, "error": None}


def host_load() -> dict[str, Any]:
    """CPU %, load average, memory used/total (bytes) of this host."""
    import psutil

    vm = psutil.virtual_memory()
    out: dict[str, Any] = {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": os.cpu_count(),
        "mem_used": int(vm.total - vm.available),
        "mem_total": int(vm.total),
    }
    if hasattr(os, "getloadavg"):
        out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return out


def use_nvml(binding: Any = None) -> None:
    """Read GPUs through `binding` (an object with pynvml's API, already initialised) instead of
    importing pynvml; None forgets it, and the next look probes pynvml again. For a host whose
    NVML lives elsewhere, and for tests that stand a fixed inventory in for NVML."""
    with _lock:
        _nvml_state.clear()
        if binding is None:
            _nvml_state.update(tried=False, ok=False, error=None)
        else:
            _nvml_state.update(tried=True, ok=True, error=None, module=binding)


def _nvml():
    """The pynvml module, initialised once; None when absent or without a driver."""
    with _lock:
        if not _nvml_state["tried"]:
            _nvml_state["tried"] = True
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state.update(ok=True, module=pynvml)
            except Exception as e:  # noqa: BLE001 - no package, no driver, no GPU: all mean "no GPU"
                _nvml_state["error"] = f"{type(e).__name__}: {e}"
        return _nvml_state.get("module") if _nvml_state["ok"] else None


def gpu_status() -> str | None:
    """None when NVML sees at least one GPU; otherwise why this host reports none, for a
    heartbeat's `gpu_note`: "no NVML: ModuleNotFoundError: ..." or "no GPU". Never raises."""
    nv = _nvml()
    if nv is None:
        return f"no NVML: {_nvml_state.get('error') or 'not available'}"
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception as e:  # noqa: BLE001
        return f"no GPU: NVML could not count them ({type(e).__name__}: {e})"
    return None if count > 0 else "no GPU"


def job_for_pid(pid: int, jobs: Mapping[int, str], depth: int = PARENT_DEPTH) -> str | None:
    """The job `pid` works for: `jobs` maps job processes' pids to job ids, and a process that
    is not one of them counts for the nearest of its parents (up to `depth` levels) that is, so a
    Client API script launched by a job process is that job's. None when no parent is a job's,
    or the process is gone (or lives in another pid namespace, as NVML's pids may)."""
    if pid in jobs:
        return jobs[pid]
    if not jobs:
        return None
    import psutil

    try:
        proc = psutil.Process(pid)
        for _ in range(depth):
            parent = proc.ppid()
            if parent in jobs:
                return jobs[parent]
            if parent <= 1:
                return None
            proc = psutil.Process(parent)
    except (psutil.Error, OSError):
        return None
    return None


def gpu_load(pids: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """One entry per GPU: utilisation %, memory used/total, temperature, power (W), and the
    processes on it, each with the job it runs for (`pids` maps our job processes' pids to job
    ids; their descendants count too: see job_for_pid). [] without NVML or GPUs; never raises."""
    nv = _nvml()
    if nv is None:
        return []
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - a driver that stopped answering: no GPU to report
        return []
    jobs = dict(pids or {})
    known: dict[int, str | None] = {}  # pid -> job, once per call: a process may use several GPUs
    out = []
    for i in range(count):
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            entry: dict[str, Any] = {"index": i, "name": _text(nv.nvmlDeviceGetName(h))}
        except Exception:  # noqa: BLE001 - a card that fell off the bus is left out
            continue
        for key, fn in (
            ("util_percent", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
            ("mem_used", lambda: int(nv.nvmlDeviceGetMemoryInfo(h).used)),
            ("mem_total", lambda: int(nv.nvmlDeviceGetMemoryInfo(h).total)),
            ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
        ):
            try:
                entry[key] = fn()
            except Exception:  # noqa: BLE001 - a sensor a card lacks is left out, not an error
                entry[key] = None
        try:
            procs = []
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                pid = int(p.pid)
                if pid not in known:
                    known[pid] = job_for_pid(pid, jobs)
                procs.append({"pid": pid, "job_id": known[pid], "mem_used": int(p.usedGpuMemory or 0)})
            entry["processes"] = procs
        except Exception:  # noqa: BLE001
            entry["processes"] = []
        out.append(entry)
    return out


def load_report(job_pids: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a site's heartbeat says about its host: `host` load, `gpus` (each GPU process named
    by the job it runs for; `job_pids` maps job ids to their processes' pids, as
    heartbeat_info() gives them) and `gpu_note`: why there are none, or None (the server merges
    heartbeats into what it knows of a site, so a note that no longer holds must be cleared)."""
    jobs = {int(pid): job for job, pid in (job_pids or {}).items()
            if isinstance(pid, int) and not isinstance(pid, bool)}
    gpus = gpu_load(jobs)
    return {"host": host_load(), "gpus": gpus,
            "gpu_note": None if gpus else (gpu_status() or "no GPU")}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
