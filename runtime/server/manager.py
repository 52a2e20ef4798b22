"""The server's jobs: the store (what survives restarts), the scheduler, the running JobRunners.

What the admin service calls. One per server process, over one `ServerEngine`:

- `submit_archive` / `submit_folder` validate and store a job (SUBMITTED);
- the scheduler thread starts stored jobs, oldest first, when a run slot is free (`max_jobs`),
  the sites they need are connected (`min_clients`, `mandatory_clients`) and those sites have
  the GPUs their meta.json `resource_spec` asks for; a job that cannot start is WAITING with
  the reason, and does not hold up a later job that can;
- `start()` picks up the jobs a previous server process left unfinished: a RUNNING job resumes
  after its last checkpointed round.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

from runtime.jobs import Job, JobError, load_job
from runtime.jobs.upload import UploadLimits, unpack_job
from runtime.resources import GpuReservations, SiteGpus, gpu_requests, place
from runtime.server.engine import ServerEngine
from runtime.server.job_runner import JobRunner
from runtime.server.job_state import JobLifecycle, JobStatus
from runtime.server.job_store import JobRecord, JobStore, JobStoreError, UnknownJob
from runtime.server.sites import SiteStatus

log = logging.getLogger("flshell.server")

_STORED = (".npz", ".pt", ".zip", ".gz", ".png", ".jpg")  # already compressed or binary
RESULT_DOCUMENTS = ("cross_site_val", "global_eval")  # what evaluation workflows write in result/
MAX_RESULT_DOCUMENT = 4 * 1024 * 1024  # bytes of one such document get_job returns


def job_results(result_dir: Path) -> dict[str, Any]:
    """The evaluation documents in a job's result folder, by name (those too big are left out)."""
    out: dict[str, Any] = {}
    for name in RESULT_DOCUMENTS:
        path = result_dir / f"{name}.json"
        try:
            if path.stat().st_size <= MAX_RESULT_DOCUMENT:
                out[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


class JobManager:
    def __init__(
        self,
        engine: ServerEngine,
        store: JobStore | None = None,
        max_jobs: int = 2,
        ready_timeout: float = 60.0,
        upload_limits: UploadLimits = UploadLimits(),
        schedule_interval: float = 0.5,
        resume_wait: float = 30.0,
    ) -> None:
        """`resume_wait`: seconds a job resumed after a restart waits for the sites it ran on to
        come back before it goes on without those still missing (they rejoin when they do)."""
        if max_jobs < 1:
            raise ValueError(f"max_jobs: need at least 1, got {max_jobs}")
        self.engine = engine
        self.workspace = engine.workspace
        self.store = store or JobStore(self.workspace)
        self.events = engine.events
        self.max_jobs = max_jobs
        self.ready_timeout = ready_timeout
        self.upload_limits = upload_limits
        self.schedule_interval = schedule_interval
        self.resume_wait = resume_wait
        self._resume_deadline = time.monotonic() + resume_wait
        self.started_at = time.time()
        self.addresses: dict[str, str] = {}  # "fl", "admin": filled in by the server process
        self.on_server_command: Callable[[str], None] | None = None  # set by a server process
        self.runners: dict[str, JobRunner] = {}
        self._resume: set[str] = set()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lifecycle = JobLifecycle(self.store, self.events, on_final=lambda rec: self._wake.set())
        self.gpu_bookings = GpuReservations()  # GPUs of jobs started here, until sites report them
        self._starting: dict[str, threading.Thread] = {}  # job id -> its launch, being built
        self._launched = threading.Condition()
        self._launched_runners: dict[str, JobRunner] = {}  # every runner started here, by job

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, resume: bool = True) -> "JobManager":
        """Pick up unfinished jobs of a previous run (resume a RUNNING one after its last
        round; without `resume`, end them FAILED: a simulation's jobs do not outlive it), then
        schedule until stop()."""
        self._resume_deadline = time.monotonic() + self.resume_wait
        for rec in self.store.unfinished():
            if not resume:
                self._end(rec, JobStatus.FAILED, "the process that ran it ended before it did")
            elif rec.status == JobStatus.RUNNING:
                self._resume.add(rec.job_id)
                log.info(f"job {rec.label()} was running when the server stopped: it resumes")
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, abort_running: bool = False, timeout: float = 10.0) -> None:
        """Stop scheduling. Running jobs are left RUNNING in the store (a restarted server
        resumes them) unless `abort_running`."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.settle(timeout)  # a launch under way starts nothing now: its job stays stored
        with self._lock:
            runners = list(self.runners.values())
        for r in runners:
            if abort_running:
                r.abort("server shutdown")
        deadline = time.monotonic() + timeout
        for r in runners:
            if abort_running:
                r.wait(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.set()

    def detach_running(self) -> None:
        """The runners of jobs still running let go of the store (they end with this process
        or are left behind by an embedded federation that stops): those jobs stay RUNNING and
        resume on the next start, instead of being recorded FAILED as their sites go."""
        with self._lock:
            runners = [r for r in self.runners.values() if not r.done]
        for runner in runners:
            runner.detach()

    # ---- submit ------------------------------------------------------------------------------

    def submit_archive(self, data: bytes, submitter: str,
                       extra: dict[str, Any] | None = None) -> str:
        """A zipped job folder (runtime.jobs.upload.pack_job) -> a stored job's id. Every
        upload check runs before anything is written outside the staging folder. `extra` is
        kept with the job (e.g. the submitter's org)."""
        staging = self.workspace / "staging"
        folder = unpack_job(data, staging, self.upload_limits)
        try:
            return self.submit_folder(folder, submitter, extra)
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)

    def submit_folder(self, folder: str | os.PathLike[str], submitter: str,
                      extra: dict[str, Any] | None = None,
                      overrides: dict[str, Any] | None = None) -> str:
        """Store a job folder as a new job (SUBMITTED); `overrides` replace workflow args of
        the same name when it runs (the simulator's --rounds: {"num_rounds": 2})."""
        if overrides:
            extra = {**(extra or {}), "overrides": dict(overrides)}
        job_id = self.store.submit(folder, submitter, meta_extra=extra)
        self.lifecycle.submitted(job_id, submitter=submitter)
        self._wake.set()
        return job_id

    def clone_job(self, ref: str, submitter: str, extra: dict[str, Any] | None = None) -> str:
        job_id = self.store.clone(ref, submitter, extra)
        self.lifecycle.submitted(job_id, submitter=submitter,
                                 cloned_from=self.store.get(job_id).extra.get("cloned_from"))
        self._wake.set()
        return job_id

    # ---- queries -----------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        return self.store.resolve(ref)

    def list_jobs(self, name: str | None = None, status: Any = None, limit: int | None = None,
                  include_done: bool = True) -> list[dict[str, Any]]:
        return [self._job_dict(r) for r in self.store.list(name, status, limit, include_done)]

    def get_job(self, ref: str) -> dict[str, Any]:
        rec = self.store.get(ref)
        out = self._job_dict(rec)
        out["rounds"] = self.store.rounds(rec.job_id)
        out["transitions"] = self.store.transitions(rec.job_id)
        out["results"] = job_results(rec.workspace / "result")
        status_file = rec.workspace / "status.json"
        try:
            status = json.loads(status_file.read_text(encoding="utf-8"))
            out["failure_details"] = status.get("failure_details") or {}
            out["failed_sites"] = status.get("failed_sites") or []
        except (OSError, ValueError):
            out["failure_details"], out["failed_sites"] = {}, []
        return out

    def job_owner(self, ref: str) -> tuple[str, str | None, str | None]:
        """(job id, submitter, submitter's org or None) of the job `ref` names."""
        rec = self.store.get(ref)
        org = rec.extra.get("submitter_org")
        return rec.job_id, rec.submitter, org if isinstance(org, str) else None

    def job_done(self, ref: str) -> bool:
        return self.store.get(ref).done

    def _job_dict(self, rec: JobRecord) -> dict[str, Any]:
        d = rec.to_dict()
        d["short_id"] = rec.short_id
        runner = self.runners.get(rec.job_id)
        if runner is not None and runner.ctx is not None and not rec.done:
            d["current_round"] = runner.ctx.current_round  # the round in progress, live
            d["total_rounds"] = runner.ctx.total_rounds or d["total_rounds"]
            d["round_in_progress"] = True
        return d

    def list_sites(self) -> list[dict[str, Any]]:
        return self.engine.sites.snapshot()

    def system_info(self) -> dict[str, Any]:
        from runtime.monitor import host_load

        counts: dict[str, int] = {}
        for rec in self.engine.sites.all():
            counts[rec.status] = counts.get(rec.status, 0) + 1
        return {
            "server": socket.gethostname(), "pid": os.getpid(),
            "started_at": self.started_at, "uptime": round(time.time() - self.started_at, 1),
            "workspace": str(self.workspace), "addresses": dict(self.addresses),
            "max_jobs": self.max_jobs, "running_jobs": sorted(j for j, r in self.runners.items() if not r.done),
            "sites": counts, "host": host_load(),
        }

    def log_file(self, ref: str, site: str | None = None) -> Path:
        rec = self.store.get(ref)
        logs = rec.workspace / "logs"
        if site is None:
            path = logs / "server.log"
        else:
            if site not in rec.sites and not (logs / f"{site}.log").is_file():
                raise FileNotFoundError(
                    f"job {rec.label()} does not run on {site!r}; its sites: {', '.join(rec.sites) or 'none'}")
            path = logs / f"{site}.log"
            self.flush_job_logs(rec.job_id)  # what its sites shipped is in the file before it is read
        if not path.is_file():
            who = "the server" if site is None else site
            raise FileNotFoundError(f"job {rec.label()} has no log from {who} yet (status {rec.status})")
        return path

    # ---- actions -----------------------------------------------------------------------------

    def abort_job(self, ref: str, by: str) -> dict[str, Any]:
        rec = self.store.get(ref)
        with self._lock:
            runner = self.runners.get(rec.job_id)
            if runner is not None:
                runner.abort(by)
            elif not rec.done:
                self.lifecycle.move(rec.job_id, JobStatus.ABORTED, f"aborted by {by}")
            else:
                raise JobStoreError(f"job {rec.label()} has already ended ({rec.status})")
        return self._job_dict(self.store.get(rec.job_id))

    def fail_waiting(self, ref: str, reason: str) -> bool:
        """End a job that waits to be scheduled FAILED with `reason` (its wait cannot end: a
        simulation's sites never change); False if it runs or has ended."""
        with self._lock:
            rec = self.store.get(ref)
            if rec.job_id in self.runners or rec.status not in (JobStatus.SUBMITTED, JobStatus.WAITING):
                return False
            self._end(rec, JobStatus.FAILED, reason)
            return True

    def delete_job(self, ref: str) -> dict[str, Any]:
        rec = self.store.delete(ref)
        self.events.publish("job_deleted", job_id=rec.job_id, name=rec.name)
        return rec.to_dict()

    def download_job(self, ref: str) -> Path:
        """A temporary zip of the job's server workspace (the caller deletes it)."""
        rec = self.store.get(ref)
        self.flush_job_logs(rec.job_id)  # the site logs shipped so far go with it
        out_dir = self.workspace / "downloads"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{rec.job_id}-{uuid.uuid4().hex[:8]}.zip"
        root = rec.workspace
        with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
            for f in sorted(root.rglob("*")):
                rel = f.relative_to(root)
                if f.is_symlink() or not f.is_file() or rel.parts[0] == "checkpoint":
                    continue
                method = zipfile.ZIP_STORED if f.suffix in _STORED else zipfile.ZIP_DEFLATED
                zf.write(f, str(Path(rec.job_id) / rel), compress_type=method)
        return path

    # ---- operating the federation ------------------------------------------------------------

    def operate(self, action: str, target: str | None, sites: list[str], by: str) -> dict[str, Any]:
        """shutdown / restart the server (`target` "server") or sites ("client", all connected
        ones unless `sites` names some), or remove_client `sites` from the registry."""
        from runtime.transport.base import SiteCommand

        known = {r.name for r in self.engine.sites.all()}
        unknown = [s for s in sites if s not in known]
        if unknown:
            raise ValueError(f"unknown sites: {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})")
        if action == "remove_client":
            if not sites:
                raise ValueError("remove_client: name the sites to remove")
            done = [s for s in sites if self.engine.remove_site(s)]
            self.events.publish("operator", action=action, sites=done, by=by)
            self._wake.set()
            return {"done": done, "message": f"removed {', '.join(done)}"}
        if action not in ("shutdown", "restart"):
            raise ValueError(f"unknown action {action!r}: shutdown, restart or remove_client")
        if target == "client":
            live = [r.name for r in self.engine.sites.all() if r.status in SiteStatus.LIVE]
            targets = sites or live
            for s in targets:
                self.engine.send(s, SiteCommand(action))
            self.events.publish("operator", action=action, target=target, sites=targets, by=by)
            return {"done": targets, "message": f"{action} sent to {', '.join(targets) or 'no site'}"}
        if target == "server":
            if self.on_server_command is None:
                raise JobStoreError(f"this server cannot {action} itself from the admin port "
                                    "(an embedded federation ends with the console)")
            self.events.publish("operator", action=action, target=target, by=by)
            self.on_server_command(action)
            what = "restarting: running jobs resume after their last round" if action == "restart" \
                else "shutting down: running jobs resume when it starts again"
            return {"done": ["server"], "message": f"server {what}"}
        raise ValueError(f"{action}: target must be server or client, got {target!r}")

    # ---- scheduling --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.schedule_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.schedule_once()
            except Exception:  # noqa: BLE001 - the scheduler must outlive any one job
                log.exception("scheduler pass failed")

    def schedule_once(self) -> None:
        """Reap finished runners, then start what can start (oldest first). A job's components
        are built on a launch thread of its own, outside the scheduler's lock: a slow
        constructor holds up neither other jobs nor admin calls (`settle()` waits for them)."""
        with self._lock:
            for job_id in [j for j, r in self.runners.items() if r.done]:
                del self.runners[job_id]
                self.gpu_bookings.end(job_id, {site.name: site.info.get("gpu_alloc")
                                               for site in self.engine.sites.all()})
            for rec in self.store.unfinished():
                if rec.job_id in self.runners or rec.job_id in self._starting:
                    continue
                busy = len(self.runners) + len(self._starting)
                if busy >= self.max_jobs:
                    self._wait(rec, f"waiting for a free run slot: {busy} of "
                                    f"{self.max_jobs} jobs running")
                    continue
                try:
                    job = load_job(rec.folder)
                except JobError as e:
                    self._end(rec, JobStatus.FAILED, f"the stored job is invalid: {e}")
                    continue
                sites, why = self._placement(job)
                late: list[str] = []
                if sites is not None and rec.job_id in self._resume:
                    late, why = self._resume_sites(rec, job, sites)
                    sites = None if why else sites
                if sites is None:
                    self._wait(rec, why)
                    continue
                self.gpu_bookings.reserve(rec.job_id, gpu_requests(sites, job.resource_spec))
                launch = threading.Thread(target=self._launch, args=(rec, job, sites, late),
                                          name=f"launch-{rec.short_id}", daemon=True)
                self._starting[rec.job_id] = launch
                launch.start()

    def settle(self, timeout: float | None = 30.0) -> bool:
        """Wait until the jobs being launched are running or have failed to start; False if
        some are still being built after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                launches = list(self._starting.values())
            if not launches:
                return True
            for t in launches:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._starting

    def _placement(self, job: Job) -> tuple[list[str] | None, str]:
        """The connected sites to run `job` on, or None and why it must wait."""
        live = sorted(r.name for r in self.engine.sites.all() if r.status == SiteStatus.CONNECTED)
        targets = [s for s in live if job.client_app_for(s) is not None]
        missing = [s for s in job.mandatory_clients if s not in targets]
        if len(targets) < job.min_clients or missing or not targets:
            parts = [f"needs {max(job.min_clients, 1)} sites, {len(targets)} connected"
                     + (f" ({', '.join(targets)})" if targets else "")]
            if missing:
                parts.append("mandatory sites not connected: " + ", ".join(missing))
            return None, "waiting for sites: " + "; ".join(parts)
        why = place(targets, job.resource_spec, self._gpu_views(targets))
        return (None, why) if why else (targets, "")

    def _resume_sites(self, rec: JobRecord, job: Job, live: list[str]) -> tuple[list[str], str]:
        """A job the server resumes goes on with the sites it ran on: it waits for them to come
        back (their agents register again after the restart), at most `resume_wait` seconds
        from the server's start; (those not back yet, why it waits or "")."""
        ran_on = [s for s in rec.sites if s != "@ALL" and job.client_app_for(s) is not None]
        missing = [s for s in ran_on if s not in live]
        if missing and time.monotonic() < self._resume_deadline:
            return missing, (f"resuming: waiting for the sites it ran on to come back: "
                             f"{', '.join(missing)} (at most {self.resume_wait:g}s)")
        return missing, ""

    def _gpu_views(self, sites: list[str]) -> dict[str, SiteGpus]:
        """Each site's GPUs as its last heartbeat told them, plus this server's bookings there."""
        views = {}
        for rec in self.engine.sites.get_many(sites):
            info = dict(rec.info)
            self.gpu_bookings.settle(rec.name, info.get("gpu_alloc"))
            views[rec.name] = SiteGpus.from_info(info, self.gpu_bookings.for_site(rec.name))
        return views

    def _wait(self, rec: JobRecord, reason: str) -> None:
        if rec.status == JobStatus.RUNNING:
            return  # a resumed job waiting for its sites stays RUNNING in the store
        self.lifecycle.move(rec.job_id, JobStatus.WAITING, reason)  # (the same wait: no event)

    def _end(self, rec: JobRecord, status: str, reason: str) -> None:
        self.lifecycle.move(rec.job_id, status, reason)

    def make_runner(self, job_id: str, job: Job, sites: list[str], resume: bool = False,
                    **kwargs: Any) -> JobRunner:
        """A runner for a stored job that keeps the store up to date (status, rounds)."""
        return JobRunner(self.engine, job, sites, self.lifecycle, job_id=job_id,
                         on_round=self._on_round, resume=resume,
                         **{"ready_timeout": self.ready_timeout, **kwargs})

    def _launch(self, rec: JobRecord, job: Job, sites: list[str], late: list[str] = ()) -> None:
        """On a launch thread: build the job's components (no lock held), then start it unless
        it was aborted meanwhile or the manager is stopping (it then stays in the store for
        the next start)."""
        resume = rec.job_id in self._resume
        overrides = rec.extra.get("overrides") if isinstance(rec.extra.get("overrides"), dict) else None
        runner = self.make_runner(rec.job_id, job, sites, resume=resume, overrides=overrides,
                                  late_sites=list(late))
        try:
            runner.prepare()
        except (JobError, Exception) as e:  # noqa: BLE001 - a job that cannot build fails alone
            with self._lock:
                self._starting.pop(rec.job_id, None)
                self.gpu_bookings.end(rec.job_id, {})
                if not self.store.get(rec.job_id).done:
                    self._end(rec, JobStatus.FAILED, f"the job could not be prepared: {e}")
            runner.release()
            self._wake.set()
            return
        with self._lock:
            self._starting.pop(rec.job_id, None)
            if self._stop.is_set() or self.store.get(rec.job_id).done:
                self.gpu_bookings.end(rec.job_id, {})
                runner.release()
                return
            self._resume.discard(rec.job_id)
            self.runners[rec.job_id] = runner
            runner.start()
        with self._launched:
            self._launched_runners[rec.job_id] = runner
            while len(self._launched_runners) > 64:  # the recent ones: whoever waits for theirs
                self._launched_runners.pop(next(iter(self._launched_runners)))
            self._launched.notify_all()

    def flush_job_logs(self, job_id: str) -> None:
        """Write what the sites of `job_id` shipped and is still buffered (someone reads it)."""
        with self._launched:
            runner = self._launched_runners.get(job_id)
        if runner is not None:
            runner.flush_site_logs()

    def flush_logs(self) -> None:
        """Write what the sites of recent jobs shipped and is still buffered (the server is
        closing)."""
        with self._launched:
            runners = list(self._launched_runners.values())
        for runner in runners:
            runner.flush_site_logs()

    def runner_for(self, job_id: str, timeout: float | None = None) -> JobRunner | None:
        """The runner of `job_id` once the scheduler has launched it (it stays known after the
        job ends); None if the job ended without one, or after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._launched:
            while job_id not in self._launched_runners:
                if self.store.get(job_id).done:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._launched.wait(0.2 if left is None else min(0.2, left))
            return self._launched_runners[job_id]

    def _on_round(self, runner: JobRunner, record: dict[str, Any]) -> None:
        if record.get("replayed"):  # a resumed job's checkpointed round: recorded unless it is
            last = self.store.last_completed_round(runner.job_id)
            if last is not None and last >= record["round"]:
                return
        total = record.get("total_rounds") or record["round"] + 1
        model = runner.workspace.result_dir / "global_model.npz" if runner.workspace else None
        self.store.record_round(runner.job_id, int(record["round"]), int(total),
                                record.get("metrics") or {},
                                model if model is not None and model.is_file() else None,
                                outcome=record)


__all__ = ["JobManager", "UnknownJob"]
