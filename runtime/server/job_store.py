"""The server's job store: an SQLite index (`<root>/jobs.db`, WAL) plus each job's files.

Layout under `root` (normally the server workspace, so `jobs/<job id>/` is also the job's
`JobWorkspace`):

    jobs.db                 the index: one row per job, one row per recorded round
    jobs/<job id>/job/      the submitted job folder, as validated by `load_job`
    jobs/<job id>/...       whatever the job runner writes there (status.json, rounds/, result/...)

Guarantees:

- A job row is committed only after its folder is complete and in place: the folder is copied
  to `jobs/.submit-<pid>-<id>/`, renamed to `jobs/<id>/` inside the write transaction, and the
  row commits after it. A crash leaves at worst a folder without a row (or a temp folder), which
  `check()` reports; it never leaves a row pointing at half a folder.
- Every write is one `BEGIN IMMEDIATE` transaction, so status changes are compare-and-set
  (two threads or processes racing `WAITING -> RUNNING`: one wins, the other gets JobStoreError)
  and a killed process leaves every committed round in place.
- One connection per store, guarded by a lock: any thread may use the store. Several stores
  (or processes) may open the same root; SQLite's locking and a busy timeout serialise them.
- Rounds are numbered from 0 like `JobContext.round_started`; a restarted server resumes at
  `last_completed_round(job) + 1`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from runtime.jobs import Job, load_job
from runtime.server.job_schema import (_MIGRATIONS, _OUTCOME, _SUBMIT_TMP, _TRASH_TMP, ALL_STATUSES,
                                       BUSY_TIMEOUT_S, DB_NAME, JOB_FOLDER, JOBS_DIR, MIN_PREFIX,
                                       SCHEMA_VERSION, UNFINISHED, AmbiguousJob, JobRecord,
                                       JobStoreError, UnknownJob, _check_int, _check_sites,
                                       _check_status, _ID_CHARS, _job_targets, _job_total_rounds,
                                       _new_job_id, _short, _to_json)
from runtime.server.job_state import TRANSITIONS, JobStatus

__all__ = ["ALL_STATUSES", "AmbiguousJob", "JobRecord", "JobStore", "JobStoreError", "SCHEMA_VERSION",
           "TRANSITIONS", "UNFINISHED", "UnknownJob"]

def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would kill it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


class JobStore:
    """The job index and job folders under `root`. Use one per server; safe from any thread."""

    def __init__(self, root: str | os.PathLike[str], busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / JOBS_DIR
        self.db_path = self.root / DB_NAME
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        conn = self._connect(busy_timeout)
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # ---- opening -----------------------------------------------------------------------------

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.db_path), timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise JobStoreError(f"cannot open job store {self.db_path}: {e}") from e
        try:
            deadline = time.monotonic() + busy_timeout
            while True:  # switching to WAL needs a moment alone with the file
                try:
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if str(mode).lower() != "wal":
                raise JobStoreError(f"{self.db_path}: the file system does not support SQLite's WAL "
                                    f"mode (journal_mode is {mode}); put the workspace on a local disk")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise JobStoreError(f"{self.db_path} is not a usable job store: {e}") from e
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise JobStoreError(
                        f"{self.db_path} has schema version {version}, newer than this flshell "
                        f"understands ({SCHEMA_VERSION}): it was written by a newer flshell; "
                        f"upgrade flshell or use another workspace")
                for v in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[v]:
                        conn.execute(statement)
                if version != SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise JobStoreError(f"{self.db_path} is not a usable job store: {e}") from e

    def close(self) -> None:
        """Close the database; further calls raise JobStoreError. Closing twice is fine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JobStore({str(self.root)!r}{', closed' if self._conn is None else ''})"

    # ---- transactions ------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JobStoreError(f"the job store at {self.root} is closed")
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: it holds SQLite's write lock from the start, so what it
        reads cannot change under it (no lost updates between threads or processes)."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ---- lookups -----------------------------------------------------------------------------

    def _record(self, row: sqlite3.Row | tuple) -> JobRecord:
        (job_id, name, status, reason, submitter, submitted_at, started_at, ended_at,
         current_round, total_rounds, sites, min_clients, extra) = row
        ws = self.jobs_dir / job_id
        return JobRecord(job_id, name, status, reason, submitter, submitted_at, started_at, ended_at,
                         current_round, total_rounds, json.loads(sites), min_clients,
                         ws / JOB_FOLDER, ws, json.loads(extra))

    _COLUMNS = ("job_id, name, status, reason, submitter, submitted_at, started_at, ended_at, "
                "current_round, total_rounds, sites, min_clients, extra")

    def _resolve(self, conn: sqlite3.Connection, ref: str) -> str:
        if not isinstance(ref, str):
            raise TypeError(f"a job id must be a string, got {type(ref).__name__}")
        key = ref.strip().lower()
        if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (key,)).fetchone():
            return key
        if not key or not set(key) <= _ID_CHARS:
            raise UnknownJob(f"no job {ref}")
        if len(key) < MIN_PREFIX:
            raise UnknownJob(f"job id prefix {ref!r} is too short: give at least {MIN_PREFIX} characters")
        rows = conn.execute(
            "SELECT job_id, name FROM jobs WHERE job_id >= ? AND job_id < ? ORDER BY job_id LIMIT 11",
            (key, key + "\x7f")).fetchall()
        if not rows:
            raise UnknownJob(f"no job {ref}")
        if len(rows) == 1:
            return rows[0][0]
        ids = [r[0] for r in rows]
        width = max(6, len(key) + 1)
        while width < 36 and len({i[:width] for i in ids}) < len(ids):
            width += 1
        shown = ", ".join(f"{i[:width]}.. ({n})" for i, n in rows[:10])
        if len(rows) > 10:
            shown += ", and more"
        raise AmbiguousJob(f"{ref} matches {shown}")

    def _get(self, conn: sqlite3.Connection, ref: str) -> JobRecord:
        job_id = self._resolve(conn, ref)
        row = conn.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:  # deleted between resolve and select by another process
            raise UnknownJob(f"no job {ref}")
        return self._record(row)

    def resolve(self, job_id_or_prefix: str) -> str:
        """The full job id for an id or a unique prefix (at least 4 characters)."""
        with self._read() as conn:
            return self._resolve(conn, job_id_or_prefix)

    def get(self, job_id_or_prefix: str) -> JobRecord:
        with self._read() as conn:
            return self._get(conn, job_id_or_prefix)

    def list(self, name: str | None = None, status: str | Iterable[str] | None = None,
             limit: int | None = None, include_done: bool = True) -> list[JobRecord]:
        """Jobs, newest submission first. `status` is one status or several."""
        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            if not isinstance(name, str):
                raise ValueError(f"name must be a job name (text), got {_short(name)}")
            where.append("name = ?")
            params.append(name)
        if status is not None:
            if not isinstance(status, (str, list, tuple, set, frozenset)):
                raise ValueError(f"status must be a status or a list of them, got {_short(status)}")
            wanted = [status] if isinstance(status, str) else list(status)
            for s in wanted:
                _check_status(s)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if not include_done:
            where.append(f"status IN ({', '.join('?' * len(UNFINISHED))})")
            params.extend(UNFINISHED)
        sql = f"SELECT {self._COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            params.append(_check_int(limit, "limit", 0))
            sql += " LIMIT ?"
        with self._read() as conn:
            return [self._record(r) for r in conn.execute(sql, params).fetchall()]

    def unfinished(self) -> list[JobRecord]:
        """SUBMITTED, WAITING and RUNNING jobs, oldest first: what a starting server picks up."""
        marks = ", ".join("?" * len(UNFINISHED))
        with self._read() as conn:
            rows = conn.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE status IN ({marks}) "
                                "ORDER BY seq", UNFINISHED).fetchall()
        return [self._record(r) for r in rows]

    # ---- submit / clone ----------------------------------------------------------------------

    def submit(self, job_folder: str | os.PathLike[str], submitter: str,
               meta_extra: dict[str, Any] | None = None, job_id: str | None = None) -> str:
        """Validate `job_folder` (JobError propagates, nothing is stored), copy it into the store
        and record a SUBMITTED job. Returns the new job id (`job_id` if given: a uuid4 string
        the caller made, e.g. for a job it already prepared)."""
        job = load_job(job_folder)
        if job_id is not None:
            try:
                ok = str(uuid.UUID(job_id)) == job_id
            except (ValueError, TypeError, AttributeError):
                ok = False
            if not ok:
                raise ValueError(f"job_id must be a canonical uuid string, got {job_id!r}")
        return self._add(job, submitter, meta_extra, job_id)

    def clone(self, job_id: str, submitter: str, extra: dict[str, Any] | None = None) -> str:
        """A new SUBMITTED job from the stored folder of `job_id` (any status); `extra` updates
        the copied `extra` (e.g. the new submitter's org)."""
        rec = self.get(job_id)
        if not rec.folder.is_dir():
            raise JobStoreError(f"job {rec.label()} cannot be cloned: its folder {rec.folder} is missing")
        job = load_job(rec.folder)
        merged = {**rec.extra, **(extra or {}), "cloned_from": rec.job_id}
        if extra is None:
            merged.pop("submitter_org", None)  # the clone is the new submitter's, org unknown
        return self._add(job, submitter, merged)

    def _add(self, job: Job, submitter: str, extra: dict[str, Any] | None,
             job_id: str | None = None) -> str:
        if not isinstance(submitter, str) or not submitter.strip():
            raise ValueError(f"submitter must be a non-empty string, got {submitter!r}")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise ValueError(f"meta_extra must be a dict with string keys, got {extra!r}")
        extra_json = _to_json(extra, "meta_extra")
        self._db()  # refuse early when closed, before copying anything
        job_id = job_id or _new_job_id()
        tmp = self.jobs_dir / f"{_SUBMIT_TMP}{os.getpid()}-{job_id}"
        final = self.jobs_dir / job_id
        renamed = False
        try:
            self._copy_job(job, tmp / JOB_FOLDER)
            with self._write() as conn:
                os.rename(tmp, final)  # inside the transaction: check() never sees it half-done
                renamed = True
                now = time.time()
                conn.execute(
                    "INSERT INTO jobs (job_id, name, status, submitter, submitted_at, total_rounds, "
                    "sites, min_clients, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job_id, job.name, JobStatus.SUBMITTED, submitter, now,
                     _job_total_rounds(job), json.dumps(_job_targets(job)), job.min_clients,
                     extra_json))
                conn.execute("INSERT INTO transitions (job_id, seq, status, reason, at) "
                             "VALUES (?, 0, ?, NULL, ?)", (job_id, JobStatus.SUBMITTED, now))
        except BaseException:
            if renamed:  # the row was rolled back: no folder without its row
                shutil.rmtree(final, ignore_errors=True)
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return job_id

    @staticmethod
    def _copy_job(job: Job, dest: Path) -> None:
        """Copy a job folder; a bare app folder becomes a job folder with a generated meta.json,
        so `load_job(record.folder)` gives the same job (same name) as the one submitted."""
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        if (job.root / "meta.json").is_file():
            shutil.copytree(job.root, dest, ignore=ignore)
            return
        app = next(iter(job.apps.values()))
        shutil.copytree(app.root, dest / app.name, ignore=ignore)
        meta = {"name": job.name, "deploy_map": job.deploy_map, "min_clients": job.min_clients,
                "mandatory_clients": job.mandatory_clients, "resource_spec": job.resource_spec}
        (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # ---- status ------------------------------------------------------------------------------

    def set_status(self, job_id: str, status: str, reason: str | None = None, *,
                   sites: list[str] | None = None) -> JobRecord:
        """Move a job to `status` (JobStoreError on a transition the lifecycle forbids) and
        return the updated record. Entering RUNNING sets started_at, a final status ended_at.
        `sites`, when given, replaces the record's sites (e.g. the sites it really runs on)."""
        _check_status(status)
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"reason must be a string, got {reason!r}")
        new_sites = None if sites is None else _check_sites(sites)
        with self._write() as conn:
            rec = self._get(conn, job_id)
            if status not in TRANSITIONS[rec.status]:
                allowed = sorted(TRANSITIONS[rec.status], key=ALL_STATUSES.index)
                why = (f"it has already ended ({rec.status})" if not allowed
                       else f"from {rec.status} it may go to {', '.join(allowed)}")
                raise JobStoreError(f"job {rec.label()} cannot go from {rec.status} to {status}: {why}")
            now = time.time()
            started_at = now if status == JobStatus.RUNNING and rec.started_at is None else rec.started_at
            ended_at = now if status in JobStatus.FINAL else None
            conn.execute(
                "UPDATE jobs SET status = ?, reason = ?, started_at = ?, ended_at = ?, "
                "sites = COALESCE(?, sites) WHERE job_id = ?",
                (status, reason, started_at, ended_at,
                 None if new_sites is None else json.dumps(new_sites), rec.job_id))
            conn.execute(
                "INSERT INTO transitions (job_id, seq, status, reason, at) VALUES (?, (SELECT "
                "COALESCE(MAX(seq) + 1, 0) FROM transitions WHERE job_id = ?), ?, ?, ?)",
                (rec.job_id, rec.job_id, status, reason, now))
            return self._get(conn, rec.job_id)

    def transitions(self, job_id: str) -> list[dict[str, Any]]:
        """Every status the job went through, in order: {status, reason, at}."""
        with self._read() as conn:
            jid = self._resolve(conn, job_id)
            rows = conn.execute("SELECT status, reason, at FROM transitions WHERE job_id = ? "
                                "ORDER BY seq", (jid,)).fetchall()
        return [{"status": st, "reason": why, "at": at} for st, why, at in rows]

    # ---- rounds ------------------------------------------------------------------------------

    def record_round(self, job_id: str, round: int, total_rounds: int, metrics: dict[str, Any],
                     model_path: str | os.PathLike[str] | None = None,
                     outcome: dict[str, Any] | None = None) -> None:
        """Record a completed round (0-based) and make it the job's current_round. Recording the
        same round again replaces it, so a server that crashed after the round but before
        reporting it can simply record it again. Refused once the job has ended. `outcome`:
        who answered ({sites_ok, sites_failed, sites_timed_out, seconds})."""
        _check_int(round, "round", 0)
        _check_int(total_rounds, "total_rounds", 1)
        if not isinstance(metrics, dict):
            raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
        metrics_json = _to_json(metrics, f"metrics of round {round}")
        outcome_json = _to_json({k: outcome[k] for k in _OUTCOME if k in outcome} if outcome else {},
                                f"outcome of round {round}")
        path = None if model_path is None else os.fspath(model_path)
        with self._write() as conn:
            rec = self._get(conn, job_id)
            if rec.done:
                raise JobStoreError(f"job {rec.label()} is {rec.status}: no more rounds can be recorded")
            conn.execute(
                "INSERT INTO rounds (job_id, round, total_rounds, metrics, model_path, recorded_at, "
                "outcome) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, round) DO UPDATE SET "
                "total_rounds = excluded.total_rounds, metrics = excluded.metrics, "
                "model_path = excluded.model_path, recorded_at = excluded.recorded_at, "
                "outcome = excluded.outcome",
                (rec.job_id, round, total_rounds, metrics_json, path, time.time(), outcome_json))
            conn.execute(
                "UPDATE jobs SET current_round = (SELECT MAX(round) FROM rounds WHERE job_id = ?), "
                "total_rounds = ? WHERE job_id = ?", (rec.job_id, total_rounds, rec.job_id))

    def rounds(self, job_id: str) -> list[dict[str, Any]]:
        """Recorded rounds in order: {round, total_rounds, metrics, model_path, recorded_at,
        sites_ok, sites_failed, sites_timed_out, seconds} (the last four as far as recorded)."""
        with self._read() as conn:
            jid = self._resolve(conn, job_id)
            rows = conn.execute(
                "SELECT round, total_rounds, metrics, model_path, recorded_at, outcome FROM rounds "
                "WHERE job_id = ? ORDER BY round", (jid,)).fetchall()
        return [{"round": r, "total_rounds": t, "metrics": json.loads(m), "model_path": p,
                 "recorded_at": at, **json.loads(o)} for r, t, m, p, at, o in rows]

    def last_completed_round(self, job_id: str) -> int | None:
        """The highest recorded round, or None: a restarted server resumes at this + 1."""
        with self._read() as conn:
            jid = self._resolve(conn, job_id)
            return conn.execute("SELECT MAX(round) FROM rounds WHERE job_id = ?", (jid,)).fetchone()[0]

    # ---- delete ------------------------------------------------------------------------------

    def delete(self, job_id: str) -> JobRecord:
        """Remove a finished job's rows and files; returns what was deleted."""
        moved: tuple[Path, Path] | None = None
        try:
            with self._write() as conn:
                rec = self._get(conn, job_id)
                if not rec.done:
                    raise JobStoreError(
                        f"job {rec.label()} is {rec.status}: only finished jobs (COMPLETED, FAILED, "
                        f"ABORTED) can be deleted; abort it first")
                conn.execute("DELETE FROM rounds WHERE job_id = ?", (rec.job_id,))
                conn.execute("DELETE FROM transitions WHERE job_id = ?", (rec.job_id,))
                conn.execute("DELETE FROM jobs WHERE job_id = ?", (rec.job_id,))
                trash = self.jobs_dir / f"{_TRASH_TMP}{os.getpid()}-{rec.job_id}"
                if rec.workspace.exists():
                    os.rename(rec.workspace, trash)
                    moved = (rec.workspace, trash)
        except BaseException:
            if moved is not None:  # the rows are still there: put the folder back
                os.rename(moved[1], moved[0])
            raise
        if moved is not None:
            shutil.rmtree(moved[1], ignore_errors=True)
        return rec

    # ---- health ------------------------------------------------------------------------------

    def check(self, repair: bool = False) -> list[str]:
        """Problems found, one line each; [] for a healthy store. Looks at the database
        (integrity, foreign keys), rows whose folder is missing, folders with no row, and temp
        folders left by a crash. `repair=True` removes only those temp folders (a dead process's),
        never a job folder or row."""
        problems: list[str] = []
        with self._write() as conn:  # the write lock: no submit or delete is half-way meanwhile
            integrity = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            if integrity != ["ok"]:
                problems.extend(f"{self.db_path}: integrity_check: {line}" for line in integrity)
            for table, _rowid, parent, _fk in conn.execute("PRAGMA foreign_key_check").fetchall():
                problems.append(f"{self.db_path}: a row of {table} refers to a missing {parent} row")
            rows = conn.execute("SELECT job_id, name FROM jobs ORDER BY seq").fetchall()
            known = {job_id for job_id, _ in rows}
            for job_id, name in rows:
                folder = self.jobs_dir / job_id / JOB_FOLDER
                if not folder.is_dir():
                    problems.append(f"job {job_id[:8]} ({name}): its stored folder {folder} is missing")
            entries = sorted(self.jobs_dir.iterdir()) if self.jobs_dir.is_dir() else []
            for entry in entries:
                if entry.name in known:
                    continue
                for prefix, what in ((_SUBMIT_TMP, "submit"), (_TRASH_TMP, "delete")):
                    if entry.name.startswith(prefix):
                        pid_text = entry.name[len(prefix):].partition("-")[0]
                        pid = int(pid_text) if pid_text.isdigit() else None
                        if pid is not None and _pid_alive(pid):
                            break  # in progress in a live process: not a problem
                        if repair:
                            shutil.rmtree(entry, ignore_errors=True)
                            problems.append(f"{entry}: removed, left by an interrupted {what}")
                        else:
                            problems.append(f"{entry}: a temp folder left by an interrupted {what}")
                        break
                else:
                    if entry.is_dir():
                        problems.append(f"{entry}: a job folder with no job in {DB_NAME} "
                                        f"(left by an interrupted submit?)")
        return problems
