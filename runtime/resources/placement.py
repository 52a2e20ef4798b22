"""The server's side of GPU scheduling: each site's GPUs as it reported them, the server's own
bookings for jobs it started, and whether a job fits (`place`). Pure: no I/O."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from runtime.resources.gpus import (GpuInventory, GpuRequest, NotPlaceable, _is_int, choose_gpus,
                                    gpu_requests)


@dataclass
class SiteGpus:
    """One site's GPUs as the server sees them: what the site offers, which jobs it said hold
    which (its last heartbeat), and jobs started there whose GPUs it has not reported yet."""

    inventory: GpuInventory
    held: dict[str, list[int]] = field(default_factory=dict)
    reserved: list[tuple[str, GpuRequest]] = field(default_factory=list)

    @classmethod
    def from_info(cls, info: Mapping[str, Any],
                  reserved: Iterable[tuple[str, GpuRequest]] = ()) -> "SiteGpus":
        """From a site's registration/heartbeat info (`gpu_inventory`, `gpu_alloc`)."""
        alloc = info.get("gpu_alloc")
        held = {j: [i for i in ids if _is_int(i)] for j, ids in alloc.items()
                if isinstance(ids, list)} if isinstance(alloc, dict) else {}
        return cls(GpuInventory.from_info(info.get("gpu_inventory")), held, list(reserved))

    def taken(self) -> dict[int, str]:
        """GPU index -> who has it: the site's holders, then the reservations in order, each
        on the GPUs the site would give it (a reservation that no longer fits takes none)."""
        taken = {i: f"held by job {j[:8]}" for j, ids in self.held.items() for i in ids}
        for job_id, req in self.reserved:
            try:
                ids = choose_gpus(self.inventory, taken, req.num, req.mem_gib)
            except NotPlaceable:
                continue
            taken.update((i, f"reserved for job {job_id[:8]}") for i in ids)
        return taken


def place(job_targets: Iterable[str], resource_spec: Any,
          site_views: Mapping[str, SiteGpus]) -> str | None:
    """None when every target site has the GPUs the job asks of it, else why it must wait:
    `waiting for GPUs: site-1 needs 2 GPU(s) with >= 8 GiB, 1 of 2 free (GPU 0 held by job …)`."""
    problems = []
    for site, req in gpu_requests(job_targets, resource_spec).items():
        view = site_views.get(site) or SiteGpus(GpuInventory())
        try:
            choose_gpus(view.inventory, view.taken(), req.num, req.mem_gib)
        except NotPlaceable as e:
            problems.append(f"{site} {e.reason}")
    return "waiting for GPUs: " + "; ".join(problems) if problems else None


class GpuReservations:
    """The server's bookings of GPUs for jobs it started, until their sites report them.

    A site allocates a job's GPUs when its JobStart arrives and says so in its next heartbeat
    (`gpu_alloc`); until then the scheduler counts the GPUs as taken. A booking goes when the
    site's report shows the job, or, once the job ended on the server, at the site's next
    report after that (which shows the GPUs still held, or freed). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, GpuRequest]] = {}
        self._ended: dict[str, dict[str, Any]] = {}

    def reserve(self, job_id: str, requests: Mapping[str, GpuRequest]) -> None:
        if requests:
            with self._lock:
                self._jobs[job_id] = dict(requests)

    def end(self, job_id: str, reports: Mapping[str, Any]) -> None:
        """`job_id` ended on the server; `reports`: each site's `gpu_alloc` object as it stands
        now (a new heartbeat brings a new object)."""
        with self._lock:
            if job_id in self._jobs:
                self._ended[job_id] = {s: reports.get(s) for s in self._jobs[job_id]}

    def settle(self, site: str, report: Any) -> None:
        """`report`: `site`'s latest `gpu_alloc` (None: the site reports none)."""
        with self._lock:
            for job_id in list(self._jobs):
                sites = self._jobs[job_id]
                if site not in sites:
                    continue
                ended = self._ended.get(job_id)
                shown = isinstance(report, dict) and job_id in report
                newer = ended is not None and (report is None or report is not ended.get(site))
                if shown or newer:
                    del sites[site]
                if not sites:
                    del self._jobs[job_id]
                    self._ended.pop(job_id, None)

    def for_site(self, site: str) -> list[tuple[str, GpuRequest]]:
        """The bookings at `site`, oldest first."""
        with self._lock:
            return [(j, sites[site]) for j, sites in self._jobs.items() if site in sites]
