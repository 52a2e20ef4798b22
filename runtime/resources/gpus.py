"""GPUs: a site's inventory (NVML or configured), a job's request (meta.json `resource_spec`),
and the site's allocator. Pure but for NVML detection (placement.py is the server's side)."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

GIB = 1024 ** 3
ALL_SITES = "@ALL"  # resource_spec's key for every site the job deploys to (deploy_map's word)
NUM, MEM = "num_of_gpus", "mem_per_gpu_in_GiB"  # NVFlare's resource_spec keys
SPEC_EXAMPLE = f'{{"{NUM}": 1, "{MEM}": 8}}'


class GpuSpecError(ValueError):
    """A configured GPU list (`flshell client --gpus`) that cannot be read; says what to write."""


class ResourceSpecError(ValueError):
    """A resource_spec entry of the wrong shape; `keys` is where, below `resource_spec`."""

    def __init__(self, keys: tuple[str, ...], message: str) -> None:
        self.keys = keys
        self.message = message
        super().__init__(".".join(("resource_spec", *keys)) + f": {message}")


class NotPlaceable(Exception):
    """A GPU request that cannot be met now; `reason` says what is missing and who holds what."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Gpu:
    index: int  # NVML's (PCI bus) order: what CUDA_VISIBLE_DEVICES names with CUDA_DEVICE_ORDER=PCI_BUS_ID
    mem_total: int | None = None  # bytes; None: unknown, taken as enough for any request
    name: str = ""

    def fits(self, mem_gib: float) -> bool:
        return self.mem_total is None or self.mem_total >= mem_gib * GIB

    def to_info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "mem_total": self.mem_total}
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs a site offers to its jobs, by index."""

    gpus: tuple[Gpu, ...] = ()

    def __iter__(self) -> Iterator[Gpu]:
        return iter(self.gpus)

    def __len__(self) -> int:
        return len(self.gpus)

    @classmethod
    def parse(cls, text: str) -> "GpuInventory":
        """`0,1` (ids, memory unknown), `0:16,1:16` (id:GiB), or `none`/`` (offer no GPUs)."""
        text = text.strip()
        if text.lower() in ("", "none"):
            return cls()
        gpus: dict[int, Gpu] = {}
        for item in text.split(","):
            ident, sep, size = (part.strip() for part in item.partition(":"))
            if not ident.isdigit():
                raise GpuSpecError(f"expected GPU ids like 0,1 or id:GiB like 0:16,1:16 (or none), "
                                   f"got {text!r}: {item.strip()!r} is not a GPU id")
            mem = None
            if sep:
                try:
                    gib = float(size)
                except ValueError:
                    gib = math.nan
                if not (math.isfinite(gib) and gib > 0):
                    raise GpuSpecError(f"GPU {ident}: expected its memory in GiB (a number > 0) "
                                       f"after ':', got {size!r}")
                mem = int(gib * GIB)
            if int(ident) in gpus:
                raise GpuSpecError(f"GPU {int(ident)} is listed twice in {text!r}")
            gpus[int(ident)] = Gpu(int(ident), mem)
        return cls(tuple(gpus[i] for i in sorted(gpus)))

    @classmethod
    def from_info(cls, entries: Any) -> "GpuInventory":
        """A site's `gpu_inventory` as it reported it; entries that are not well-formed are left
        out (a site's report must not break the scheduler)."""
        gpus: dict[int, Gpu] = {}
        for e in entries if isinstance(entries, list) else []:
            if not isinstance(e, dict) or not _is_int(e.get("index")) or e["index"] < 0:
                continue
            mem = e.get("mem_total")
            name = e.get("name")
            gpus.setdefault(e["index"], Gpu(e["index"], mem if _is_int(mem) else None,
                                            name if isinstance(name, str) else ""))
        return cls(tuple(gpus[i] for i in sorted(gpus)))

    def to_info(self) -> list[dict[str, Any]]:
        return [g.to_info() for g in self.gpus]

    def describe(self) -> str:
        """`2 GPUs (0: 16 GiB, 1: 16 GiB)`, for a site's start-up line."""
        if not self.gpus:
            return "no GPUs"
        each = ", ".join(f"{g.index}: {_gib(g.mem_total)}" if g.mem_total is not None else str(g.index)
                         for g in self.gpus)
        return f"{len(self.gpus)} GPU{'s' if len(self.gpus) != 1 else ''} ({each})"


def visible_ids(env: str | None) -> set[int] | None:
    """The GPU ids a CUDA_VISIBLE_DEVICES value leaves visible: None when it is unset (all), an
    empty set for "" or "-1" (none); ids after an entry that is not a number (a UUID, say) are
    ignored, as CUDA stops reading there."""
    if env is None:
        return None
    out: set[int] = set()
    for part in env.split(","):
        part = part.strip()
        if not part.isdigit():
            break
        out.add(int(part))
    return out


def detect_gpus() -> GpuInventory:
    """This host's GPUs as NVML numbers them; none (not an error) without nvidia-ml-py, a
    driver, or a GPU. An agent started with CUDA_VISIBLE_DEVICES offers only those GPUs (as
    NVML numbers them: the PCI bus order, CUDA_DEVICE_ORDER=PCI_BUS_ID)."""
    inventory = _nvml_gpus()
    allowed = visible_ids(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if allowed is None:
        return inventory
    return GpuInventory(tuple(g for g in inventory.gpus if g.index in allowed))


def _nvml_gpus() -> GpuInventory:
    from runtime.monitor.load import _nvml, _text

    nv = _nvml()
    if nv is None:
        return GpuInventory()
    gpus = []
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            try:
                mem: int | None = int(nv.nvmlDeviceGetMemoryInfo(handle).total)
            except Exception:  # noqa: BLE001 - a card that hides its memory still counts
                mem = None
            try:
                name = _text(nv.nvmlDeviceGetName(handle))
            except Exception:  # noqa: BLE001
                name = ""
            gpus.append(Gpu(i, mem, name))
    except Exception:  # noqa: BLE001 - a driver that fails here means no usable GPU
        return GpuInventory()
    return GpuInventory(tuple(gpus))


@dataclass(frozen=True)
class GpuRequest:
    """What a job asks of one site: `num` GPUs with at least `mem_gib` GiB each."""

    num: int
    mem_gib: float = 0.0

    def describe(self) -> str:
        return f"{self.num} GPU(s)" + (f" with >= {self.mem_gib:g} GiB" if self.mem_gib else "")


def parse_resource_spec(spec: Any) -> dict[str, GpuRequest]:
    """meta.json's `resource_spec` (`{"site-1": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}}`,
    `"@ALL"` for every site) -> site -> GpuRequest. Keys other than those two are left alone,
    as NVFlare does; a value of the wrong type raises ResourceSpecError naming where."""
    if not isinstance(spec, dict):
        raise ResourceSpecError((), f"expected an object (site -> resources), got {_shown(spec)}")
    out: dict[str, GpuRequest] = {}
    for site, entry in spec.items():
        if not isinstance(entry, dict):
            raise ResourceSpecError((site,), f"expected an object like {SPEC_EXAMPLE}, got {_shown(entry)}")
        num = entry.get(NUM, 0)
        if not _is_int(num) or num < 0:
            raise ResourceSpecError((site, NUM), f"expected a whole number >= 0, got {_shown(num)}")
        mem = entry.get(MEM, 0)
        if isinstance(mem, bool) or not isinstance(mem, (int, float)) or not math.isfinite(mem) or mem < 0:
            raise ResourceSpecError((site, MEM), f"expected a number of GiB >= 0, got {_shown(mem)}")
        out[site] = GpuRequest(num, float(mem))
    return out


def request_for(requests: Mapping[str, GpuRequest], site: str) -> GpuRequest | None:
    """What `site` must give the job: its own entry, else "@ALL"'s; None when no GPU."""
    req = requests.get(site, requests.get(ALL_SITES))
    return req if req is not None and req.num > 0 else None


def gpu_requests(sites: Iterable[str], resource_spec: Any) -> dict[str, GpuRequest]:
    """The sites among `sites` that must give the job GPUs, and what each must give."""
    requests = parse_resource_spec(resource_spec or {})
    return {s: r for s in sites if (r := request_for(requests, s)) is not None}


def choose_gpus(inventory: GpuInventory, taken: Mapping[int, str], num: int,
                mem_gib: float = 0.0) -> list[int]:
    """The lowest `num` GPU indices of `inventory` not in `taken` (index -> who has it, e.g.
    "held by job 3f2a1b2c") with at least `mem_gib` GiB; NotPlaceable saying why if there are
    not enough. What the site allocates and what the server expects it to are the same."""
    if num <= 0:
        return []
    if not inventory.gpus:
        raise NotPlaceable("has no GPUs")
    need = GpuRequest(num, mem_gib).describe()
    fitting = [g for g in inventory if g.fits(mem_gib)]
    if len(fitting) < num:
        if len(fitting) == len(inventory):
            raise NotPlaceable(f"needs {need}, has {len(inventory)}")
        small = ", ".join(f"GPU {g.index}: {_gib(g.mem_total)}" for g in inventory if not g.fits(mem_gib))
        raise NotPlaceable(f"needs {need}, {len(fitting)} of its {len(inventory)} have that much "
                           f"memory ({small})")
    free = [g.index for g in fitting if g.index not in taken]
    if len(free) < num:
        busy = ", ".join(f"GPU {g.index} {taken[g.index]}" for g in fitting if g.index in taken)
        raise NotPlaceable(f"needs {need}, {len(free)} of {len(fitting)} free ({busy})")
    return free[:num]


class GpuAllocator:
    """A site's GPUs and the jobs holding them (thread-safe)."""

    def __init__(self, inventory: GpuInventory) -> None:
        self.inventory = inventory
        self._held: dict[str, list[int]] = {}
        self._changed = threading.Condition()

    def allocate(self, job_id: str, num: int, mem_gib: float = 0.0,
                 wait_while: Callable[[list[str]], bool] | None = None,
                 timeout: float = 0.0) -> list[int]:
        """GPUs for `job_id` (choose_gpus; the same ones again if it holds some), or
        NotPlaceable. `wait_while(holders)`: while it says the jobs holding GPUs now are about
        to free them, wait up to `timeout` seconds in all for a release and try again."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if job_id in self._held:
                    return list(self._held[job_id])
                try:
                    ids = choose_gpus(self.inventory, self._taken(), num, mem_gib)
                except NotPlaceable:
                    left = deadline - time.monotonic()
                    if wait_while is None or left <= 0 or not wait_while(sorted(self._held)):
                        raise
                    self._changed.wait(left)
                    continue
                if ids:
                    self._held[job_id] = ids
                return list(ids)

    def release(self, job_id: str) -> list[int]:
        """Free what `job_id` holds (nothing if it holds nothing); the indices freed."""
        with self._changed:
            ids = self._held.pop(job_id, [])
            self._changed.notify_all()
        return ids

    def holders(self) -> dict[str, list[int]]:
        """job id -> the GPU indices it holds (a site's `gpu_alloc`)."""
        with self._changed:
            return {j: list(ids) for j, ids in self._held.items()}

    def _taken(self) -> dict[int, str]:
        return {i: f"held by job {j[:8]}" for j, ids in self._held.items() for i in ids}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _gib(mem: int | None) -> str:
    return "unknown memory" if mem is None else f"{round(mem / GIB, 1):g} GiB"


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
