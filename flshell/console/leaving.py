"""Leaving a console whose federation lives in this process (the embedded one): its unfinished
jobs are aborted (ABORTED, by this admin) or left in the store to go on the next time it opens
the same workspace (RUNNING ones resume after their last completed round); never silently failed."""

from __future__ import annotations

import time
from typing import Any, Callable

from flshell.console import render
from runtime.admin import AdminError

ABORT_WAIT = 30.0  # seconds leaving waits for aborted jobs to end before the federation stops


def unfinished_jobs(session: Any) -> list[dict[str, Any]]:
    """The jobs that have not ended (running, or waiting to: the federation ending stops them
    too); none when the server cannot be asked."""
    try:
        return session.list_jobs(include_done=False)
    except AdminError:
        return []


def names(jobs: list[dict[str, Any]]) -> str:
    """`3f2a1b2c hello-numpy RUNNING, 77aa0000 cifar WAITING`."""
    return ", ".join(f"{j.get('short_id') or render.short(j.get('job_id'))} {j.get('name')} {j.get('status')}"
                     for j in jobs)


def count(jobs: list[dict[str, Any]]) -> str:
    """`1 job has not finished (3f2a1b2c hello-numpy RUNNING)`."""
    head = "1 job has" if len(jobs) == 1 else f"{len(jobs)} jobs have"
    return f"{head} not finished ({names(jobs)})"


def left_note(jobs: list[dict[str, Any]], workspace: Any) -> str:
    it = "it stays in the store and goes on" if len(jobs) == 1 else "they stay in the store and go on"
    return (f"{count(jobs)}; {it} the next time flshell opens {workspace} (a running job resumes "
            "after its last completed round)")


def abort_all(session: Any, jobs: list[dict[str, Any]], note: Callable[[str], None],
              timeout: float = ABORT_WAIT) -> None:
    """Abort `jobs` (the server records who) and wait until they have ended, telling each."""
    for job in jobs:
        try:
            session.abort_job(job["job_id"])
        except AdminError as e:  # ended meanwhile, say
            note(f"{render.job_label(job)}: {e}")
    deadline = time.monotonic() + timeout
    for job in jobs:
        try:
            done = session.wait_for_job(job["job_id"], timeout=max(0.1, deadline - time.monotonic()), poll=0.5)
            note(render.status_line(done))
        except (TimeoutError, AdminError) as e:
            note(f"{render.job_label(job)} did not end in time ({e}); it resumes the next time")
