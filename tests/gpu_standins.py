"""Stand-ins for GPU tests on hosts without a GPU: a fixed inventory with pynvml's API
(runtime.monitor.use_nvml(FixedNvml(...))), and a real process tree for the GPU processes of a
job (a job process, the script it launched, a process that script launched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from types import SimpleNamespace
from typing import Any


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    util: int = 0
    mem_used: int = 0
    mem_total: int = 80 * 1024**3
    temperature: int = 40
    power_mw: int = 70_000
    pids: dict[int, int] = field(default_factory=dict)  # pid -> GPU memory it uses


class FixedNvml:
    """What pynvml answers about `gpus`, index by index (only the calls runtime.monitor makes)."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *gpus: FakeGpu, fail_count: bool = False) -> None:
        self.gpus = list(gpus)
        self.fail_count = fail_count

    def nvmlDeviceGetCount(self) -> int:
        if self.fail_count:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        return h.name.encode()  # older pynvml answers bytes

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        return SimpleNamespace(gpu=h.util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(used=h.mem_used, total=h.mem_total, free=h.mem_total - h.mem_used)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        return h.temperature

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return h.power_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in h.pids.items()]


# Each process prints its pid, starts the next level (which inherits stdin and stdout), then
# waits for stdin to close: the pids are read top-down, and closing stdin ends the whole tree.
_TREE = textwrap.dedent("""
    import os, subprocess, sys
    depth = int(sys.argv[1])
    print(os.getpid(), flush=True)
    child = subprocess.Popen([sys.executable, __file__, str(depth - 1)]) if depth > 0 else None
    sys.stdin.read()
    if child is not None:
        child.wait()
""")


@contextmanager
def process_tree(folder: Path, depth: int = 2) -> Iterator[list[int]]:
    """Real processes, each the parent of the next: their pids, top first (depth + 1 of them)."""
    script = folder / "process_tree.py"
    script.write_text(_TREE)
    top = subprocess.Popen([sys.executable, str(script), str(depth)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        yield [int(top.stdout.readline()) for _ in range(depth + 1)]
    finally:
        top.stdin.close()
        top.wait(timeout=30)
        top.stdout.close()
