"""Where a site gets a job's app: downloaded from the server and unpacked safely."""

from __future__ import annotations

from pathlib import Path

from runtime.jobs import App, JobError, load_job
from runtime.jobs.upload import UploadLimits, unpack_job
from runtime.transport.base import JobStart, SiteTransport


class DownloadedApps:
    """App source for a site on its own host: fetches the job folder the server offers for
    this site, unpacks it with every upload check (paths, sizes, symlinks) into the site's
    workspace, and validates it like any job folder before anything of it runs."""

    def __init__(self, transport: SiteTransport, site: str, workspace: str | Path,
                 limits: UploadLimits | None = None) -> None:
        self.transport = transport
        self.site = site
        self.workspace = Path(workspace)
        self.limits = limits or UploadLimits()

    def __call__(self, msg: JobStart) -> App:
        data = self.transport.get_job(self.site, msg.job_id)
        staging = self.workspace / "jobs" / msg.job_id / "app"
        folder = unpack_job(data, staging, self.limits)
        job = load_job(folder)
        app = job.apps.get(msg.app_name)
        if app is None:
            raise JobError("meta.json", "deploy_map",
                           f"the server asked for app {msg.app_name!r}, the job has {sorted(job.apps)}")
        return app
