"""The job store's schema and what goes into it: the tables and their migrations, the record of
one job, and the checks every value passes before it is written (runtime.server.job_store)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.jobs import ALL_SITES, Job, JobError, substitute
from runtime.server.job_state import TRANSITIONS, JobStatus

SCHEMA_VERSION = 3
_OUTCOME = ("sites_ok", "sites_failed", "sites_timed_out", "seconds")
DB_NAME = "jobs.db"
JOBS_DIR = "jobs"
JOB_FOLDER = "job"
MIN_PREFIX = 4
BUSY_TIMEOUT_S = 30.0
_SUBMIT_TMP = ".submit-"
_TRASH_TMP = ".trash-"
_ID_CHARS = frozenset("0123456789abcdef-")

ALL_STATUSES = JobStatus.ALL
UNFINISHED = JobStatus.UNFINISHED

# version -> statements that bring the schema from version-1 to version.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        f"""CREATE TABLE IF NOT EXISTS jobs (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id        TEXT    NOT NULL UNIQUE,
            name          TEXT    NOT NULL,
            status        TEXT    NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in ALL_STATUSES)})),
            reason        TEXT,
            submitter     TEXT    NOT NULL,
            submitted_at  REAL    NOT NULL,
            started_at    REAL,
            ended_at      REAL,
            current_round INTEGER,
            total_rounds  INTEGER,
            sites         TEXT    NOT NULL DEFAULT '[]',
            min_clients   INTEGER NOT NULL,
            extra         TEXT    NOT NULL DEFAULT '{{}}'
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status)",
        "CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name)",
        """CREATE TABLE IF NOT EXISTS rounds (
            job_id        TEXT    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
            round         INTEGER NOT NULL CHECK (round >= 0),
            total_rounds  INTEGER,
            metrics       TEXT    NOT NULL DEFAULT '{}',
            model_path    TEXT,
            recorded_at   REAL    NOT NULL,
            PRIMARY KEY (job_id, round)
        ) WITHOUT ROWID""",
    ),
    # who answered each round: {sites_ok, sites_failed, sites_timed_out, seconds}
    2: ("ALTER TABLE rounds ADD COLUMN outcome TEXT NOT NULL DEFAULT '{}'",),
    # every status a job went through, in order (jobs of older stores: submitted, then now)
    3: (
        """CREATE TABLE IF NOT EXISTS transitions (
            job_id        TEXT    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
            seq           INTEGER NOT NULL CHECK (seq >= 0),
            status        TEXT    NOT NULL,
            reason        TEXT,
            at            REAL    NOT NULL,
            PRIMARY KEY (job_id, seq)
        ) WITHOUT ROWID""",
        "INSERT INTO transitions (job_id, seq, status, reason, at) "
        "SELECT job_id, 0, 'SUBMITTED', NULL, submitted_at FROM jobs",
        "INSERT INTO transitions (job_id, seq, status, reason, at) "
        "SELECT job_id, 1, status, reason, COALESCE(ended_at, started_at, submitted_at) FROM jobs "
        "WHERE status != 'SUBMITTED'",
    ),
}
assert max(_MIGRATIONS) == SCHEMA_VERSION


class JobStoreError(LookupError):
    """A job store operation was refused: bad transition, unfinished job, closed store..."""


class UnknownJob(JobStoreError):
    """No job matches the id or prefix (or the prefix is too short to look up)."""


class AmbiguousJob(JobStoreError):
    """The prefix matches several jobs; the message lists them."""


@dataclass
class JobRecord:
    """One job as the store knows it. `folder` is the stored job folder, `workspace` its parent."""

    job_id: str
    name: str
    status: str
    reason: str | None
    submitter: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    current_round: int | None
    total_rounds: int | None
    sites: list[str]
    min_clients: int
    folder: Path
    workspace: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.job_id[:8]

    @property
    def done(self) -> bool:
        return self.status in JobStatus.FINAL

    def label(self) -> str:
        """`3f2a1b2c (hello-numpy)`: how messages name a job."""
        return f"{self.short_id} ({self.name})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (paths as strings), for the admin service and the event bus."""
        return {
            "job_id": self.job_id, "name": self.name, "status": self.status, "reason": self.reason,
            "submitter": self.submitter, "submitted_at": self.submitted_at,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "current_round": self.current_round, "total_rounds": self.total_rounds,
            "sites": list(self.sites), "min_clients": self.min_clients,
            "folder": str(self.folder), "workspace": str(self.workspace), "extra": dict(self.extra),
        }


def _new_job_id() -> str:
    return str(uuid.uuid4())


def _json_default(value: Any) -> Any:
    """numpy / torch scalars and arrays become plain numbers and lists; paths become strings."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    for attr in ("item", "tolist"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError, RuntimeError):  # .item() of a multi-element array
                continue
    raise TypeError(f"{type(value).__name__} is not JSON-compatible")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON-compatible: {e}") from None


def _check_status(status: Any) -> str:
    if not isinstance(status, str) or status not in TRANSITIONS:
        raise ValueError(f"unknown job status {_short(status)}; expected one of {', '.join(ALL_STATUSES)}")
    return status


MAX_INT = 2**63 - 1  # what SQLite stores


def _check_int(value: Any, what: str, minimum: int, maximum: int = MAX_INT) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ValueError(f"{what} must be an integer from {minimum} to {maximum}, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_sites(sites: Any) -> list[str]:
    if isinstance(sites, str) or not all(isinstance(s, str) and s for s in sites):
        raise ValueError(f"sites must be a list of site names, got {sites!r}")
    return list(sites)


def _job_targets(job: Job) -> list[str]:
    """The client sites a job names in its deploy_map, plus "@ALL" when it goes to every site."""
    sites = job.named_sites()
    if any(ALL_SITES in ss for ss in job.deploy_map.values()):
        sites.append(ALL_SITES)
    return sites


def _job_total_rounds(job: Job) -> int | None:
    """num_rounds of the server app's first workflow that has one, or None (best effort)."""
    try:
        cfg = job.server_app().server_config
    except JobError:
        return None
    if cfg is None:
        return None
    for spec in cfg.workflows:
        if "num_rounds" not in spec.args:
            continue
        try:
            n = substitute(spec.args["num_rounds"], cfg.variables)
        except Exception:  # noqa: BLE001 - only a display hint; the runner reports real errors
            return None
        return n if isinstance(n, int) and not isinstance(n, bool) else None
    return None
