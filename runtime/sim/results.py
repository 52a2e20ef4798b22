"""What a simulation leaves for its summary: SimulationResult, and the sites that failed in
rounds that still completed (from the round records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.server.job_state import JobStatus


@dataclass
class SiteFailures:
    """A site that failed (or timed out) in some of the rounds that completed."""

    failed: int  # rounds in which it failed or timed out
    rounds: int  # completed rounds it was asked to take part in
    last_error: str | None  # the last line of its last error ("timed out" for a timeout)


def site_failures(records: list[dict[str, Any]], errors: dict[str, str]) -> dict[str, SiteFailures]:
    """From the round records (sites_ok / sites_failed / sites_timed_out): every site that
    failed at least once, most failures first; `errors` holds each site's last error text."""
    failed: dict[str, int] = {}
    asked: dict[str, int] = {}
    last: dict[str, str] = {}
    for rec in records:
        for key in ("sites_ok", "sites_failed", "sites_timed_out"):
            for site in rec.get(key) or []:
                asked[site] = asked.get(site, 0) + 1
                if key != "sites_ok":
                    failed[site] = failed.get(site, 0) + 1
                    last[site] = key
    out = {}
    for site in sorted(failed, key=lambda s: (-failed[s], s)):
        error = "timed out" if last[site] == "sites_timed_out" else _last_line(errors.get(site))
        out[site] = SiteFailures(failed[site], asked[site], error)
    return out


def _last_line(text: str | None) -> str | None:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else None


@dataclass
class SimulationResult:
    job_id: str
    job_name: str
    status: str
    reason: str | None
    failed_sites: list[str]
    failure_details: dict[str, str]
    rounds_completed: int
    total_rounds: int | None
    wall_time: float
    metrics: dict[str, Any]
    workspace: Path
    job_dir: Path
    result_dir: Path
    server_log: Path
    site_log_pattern: str = ""
    lost_sites: dict[str, str] = field(default_factory=dict)  # site -> why its worker ended
    site_failures: dict[str, SiteFailures] = field(default_factory=dict)  # over completed rounds
    idle_sites: list[str] = field(default_factory=list)  # no app deployed to them

    @property
    def results(self) -> dict[str, Any]:
        """What the job's evaluation workflows wrote (cross_site_val, global_eval), by name."""
        from runtime.server.manager import job_results

        return job_results(self.result_dir)

    def site_log(self, site: str) -> Path:
        return Path(self.site_log_pattern.format(site=site))

    @property
    def ok(self) -> bool:
        return self.status == JobStatus.COMPLETED
