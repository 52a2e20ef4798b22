"""Host load from psutil and per-GPU load from NVML; a host without GPUs reports none."""

from __future__ import annotations

import os
from typing import Any

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


def _nvml():
    """The pynvml module, initialised once; None when absent or without a driver."""
    if not _nvml_state["tried"]:
        _nvml_state["tried"] = True
        try:
            import pynvml

            pynvml.nvmlInit()
            _nvml_state.update(ok=True, module=pynvml)
        except Exception as e:  # noqa: BLE001 - no package, no driver, no GPU: all mean "no GPU"
            _nvml_state["error"] = f"{type(e).__name__}: {e}"
    return _nvml_state.get("module") if _nvml_state["ok"] else None


def gpu_load(pids: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """One entry per GPU: utilisation %, memory used/total, temperature, power (W), and the
    processes on it (`pids` maps our job processes' pids to job ids). [] without GPUs."""
    nv = _nvml()
    if nv is None:
        return []
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        entry: dict[str, Any] = {"index": i, "name": _text(nv.nvmlDeviceGetName(h))}
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
            procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
            entry["processes"] = [
                {"pid": p.pid, "job_id": (pids or {}).get(p.pid),
                 "mem_used": int(p.usedGpuMemory or 0)} for p in procs]
        except Exception:  # noqa: BLE001
            entry["processes"] = []
        out.append(entry)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
