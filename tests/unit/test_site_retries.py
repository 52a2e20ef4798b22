"""A site's reports and results survive a dropped connection (runtime.client.backoff.retrying)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.client.agent import SiteAgent
from runtime.client.backoff import Backoff, retrying
from runtime.client.sitelog import LogSink
from runtime.jobs import load_job
from runtime.server.engine import ServerEngine
from runtime.transport.base import JobStart, JobState, TransportError
from runtime.transport.inproc import InProcTransport

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retrying_retries_what_did_not_reach_the_server_and_gives_up_in_time():
    calls = []
    stop = threading.Event()

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransportError("connection reset (UNAVAILABLE)", retryable=True)
        return "ok"

    assert retrying(flaky, within=30, stop=stop, backoff=Backoff(base=0.001, cap=0.002)) == "ok"
    assert len(calls) == 3

    clock = FakeClock()

    def down():
        clock.now += 10.0  # each attempt takes 10 s of the budget
        raise TransportError("no route (UNAVAILABLE)", retryable=True)

    with pytest.raises(TransportError, match="no route"):
        retrying(down, within=25, stop=stop, backoff=Backoff(base=0.001, cap=0.002), clock=clock)
    assert clock.now == 30.0  # three attempts: the third ended past the 25 s


def test_a_refusal_is_not_retried():
    calls = []

    def refused():
        calls.append(1)
        raise TransportError("site 'x' is not registered")

    with pytest.raises(TransportError, match="not registered"):
        retrying(refused, within=30, stop=threading.Event())
    assert calls == [1]


def test_a_stopping_site_does_not_retry():
    stop = threading.Event()
    stop.set()
    calls = []

    def down():
        calls.append(1)
        raise TransportError("down (UNAVAILABLE)", retryable=True)

    with pytest.raises(TransportError):
        retrying(down, within=30, stop=stop)
    assert calls == [1]


class DropsFirstReport(InProcTransport):
    """The in-process transport whose first job report is lost on the way, as a dropped
    connection loses it."""

    def __init__(self, handler) -> None:
        super().__init__(handler)
        self.dropped = 0

    def report_job(self, site, job_id, state, detail=None):
        if self.dropped == 0:
            self.dropped += 1
            raise TransportError("Socket closed (UNAVAILABLE)", retryable=True)
        return super().report_job(site, job_id, state, detail)


def test_a_job_start_survives_a_dropped_ready_report(tmp_path):
    engine = ServerEngine(tmp_path / "server")
    transport = DropsFirstReport(engine)
    app = load_job(HELLO).apps["app"]
    sink = LogSink(interval=0.05)
    agent = SiteAgent("site-1", transport, lambda msg: app, tmp_path / "site-1", sink)
    reports = []
    got = threading.Event()

    def listener(site, state, detail):
        reports.append((site, state))
        got.set()

    try:
        agent.register()
        engine.add_job_listener("job-1", listener)
        agent.handle(JobStart("job-1", "hello-numpy", "app"))
        assert got.wait(10)
        assert transport.dropped == 1 and reports == [("site-1", JobState.READY)]
        assert "job-1" in agent.jobs
    finally:
        agent.stop(timeout=5)
        engine.close()
        sink.close()
