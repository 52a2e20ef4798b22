"""The job lifecycle: one place moves a job between states, the store first, then the event."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.server.events import EventBus
from runtime.server.job_state import TRANSITIONS, JobLifecycle, JobStatus as S
from runtime.server.job_store import JobStore, JobStoreError

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


@pytest.fixture
def life(tmp_path):
    store = JobStore(tmp_path / "server")
    ended = []
    lifecycle = JobLifecycle(store, EventBus(), on_final=ended.append)
    lifecycle.ended = ended
    yield lifecycle
    store.close()


def test_every_state_has_its_transitions_and_final_states_have_none():
    assert set(TRANSITIONS) == set(S.ALL)
    assert all(not TRANSITIONS[s] for s in S.FINAL)
    assert all(S.FAILED in TRANSITIONS[s] and S.ABORTED in TRANSITIONS[s] for s in S.UNFINISHED)


def test_a_job_moves_through_its_states_and_each_move_is_stored_before_it_is_told(life):
    sub = life.events.subscribe()
    job_id = life.store.submit(HELLO, "a@org")
    seen = []  # (event status, store status at the moment the event was read)

    def drain():
        for ev in sub.drain():
            seen.append((ev["status"], ev.get("reason"), life.store.get(job_id).status))

    life.submitted(job_id, submitter="a@org")
    life.move(job_id, S.WAITING, "waiting for sites: needs 2, 1 connected")
    life.move(job_id, S.WAITING, "waiting for sites: needs 2, 1 connected")  # the same wait
    life.move(job_id, S.WAITING, "deploying to 2 sites")
    drain()
    life.move(job_id, S.RUNNING, sites=["site-1", "site-2"])
    drain()
    life.move(job_id, S.COMPLETED)
    drain()
    assert [(st, why) for st, why, _ in seen] == [
        (S.SUBMITTED, None), (S.WAITING, "waiting for sites: needs 2, 1 connected"),
        (S.WAITING, "deploying to 2 sites"), (S.RUNNING, None), (S.COMPLETED, None)]
    assert seen[-1][2] == S.COMPLETED and seen[-2][2] == S.RUNNING
    assert life.store.get(job_id).sites == ["site-1", "site-2"]
    assert [r.job_id for r in life.ended] == [job_id]


def test_a_forbidden_move_changes_nothing_and_says_nothing(life):
    job_id = life.store.submit(HELLO, "a@org")
    life.move(job_id, S.ABORTED, "aborted by a@org")
    sub = life.events.subscribe()
    with pytest.raises(JobStoreError, match="already ended"):
        life.move(job_id, S.RUNNING)
    assert life.move(job_id, S.ABORTED, "aborted by b@org").reason == "aborted by a@org"
    assert sub.drain() == [] and len(life.ended) == 1
