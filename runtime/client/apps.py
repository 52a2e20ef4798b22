"""Where a site gets a job's app: downloaded from the server and unpacked safely."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from runtime.jobs import App, Job, JobError, load_job
from runtime.jobs.upload import UploadLimits, unpack_job
from runtime.transport.base import JobStart, SiteTransport


class SharedApps:
    """Jobs unpacked once for the sites of one process that share it (a simulation's), keyed by
    job id and the archive's digest: the second site with the same bytes gets the first's job,
    checked and loaded once. Sites on hosts of their own never share."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str, data: bytes, unpack) -> Job:
        key = (job_id, hashlib.sha256(data).hexdigest())
        with self._lock:  # one unpack per key; the others wait for it
            job = self._jobs.get(key)
            if job is None:
                job = self._jobs[key] = unpack()
            return job


class DownloadedApps:
    """App source for a site: fetches the job folder the server offers for this site, unpacks
    it with every upload check (paths, sizes, symlinks) into the site's workspace, and validates
    it like any job folder before anything of it runs. With `shared`, sites of one process
    unpack each job once (the simulator's)."""

    def __init__(self, transport: SiteTransport, site: str, workspace: str | Path,
                 limits: UploadLimits | None = None, shared: SharedApps | None = None) -> None:
        self.transport = transport
        self.site = site
        self.workspace = Path(workspace)
        self.limits = limits or UploadLimits()
        self.shared = shared

    def __call__(self, msg: JobStart) -> App:
        data = self.transport.get_job(self.site, msg.job_id)

        def unpack() -> Job:
            staging = self.workspace / "jobs" / msg.job_id / "app"
            return load_job(unpack_job(data, staging, self.limits))

        job = unpack() if self.shared is None else self.shared.get(msg.job_id, data, unpack)
        app = job.apps.get(msg.app_name)
        if app is None:
            raise JobError("meta.json", "deploy_map",
                           f"the server asked for app {msg.app_name!r}, the job has {sorted(job.apps)}")
        return app
