"""A site agent over gRPC survives the server going away: it backs off, comes back, re-registers,
and its heartbeats carry host load (and GPUs, none here, reported as an empty list)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from runtime.client.agent import SiteAgent
from runtime.client.backoff import Backoff
from runtime.client.sitelog import LogSink
from runtime.server.engine import ServerEngine
from runtime.transport.grpc_client import GrpcSiteTransport
from runtime.transport.grpc_server import FLServer


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def test_backoff_is_capped_jittered_and_resets():
    b = Backoff(base=0.1, cap=1.0, rng=random.Random(1))
    delays = [b.delay() for _ in range(12)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert max(delays[6:]) > 0.2  # grew past the base
    assert len(set(delays)) > 6  # jittered, not in lockstep
    b.reset()
    assert b.delay() <= 0.1


def test_agent_reconnects_and_reregisters_after_a_server_restart(tmp_path):
    engine1 = ServerEngine(tmp_path / "s1", heartbeat_interval=0.2)
    server = FLServer(engine1, "127.0.0.1", 0).start()
    port = server.port
    sink = LogSink()
    transport = GrpcSiteTransport(server.address)
    agent = SiteAgent("site-1", transport, lambda m: None, tmp_path / "site-1", sink, poll_timeout=0.5)
    agent.start(heartbeats=True)
    try:
        wait_for(lambda: engine1.sites.get("site-1") is not None, what="registration")
        wait_for(lambda: "host" in engine1.sites.get("site-1").info, what="a heartbeat")
        info = engine1.sites.get("site-1").info
        assert info["host"]["mem_total"] > 0 and info["gpus"] == []

        server.stop(0)
        engine1.close()
        time.sleep(0.5)  # the agent now fails and backs off
        engine2 = ServerEngine(tmp_path / "s2", heartbeat_interval=0.2)
        server = FLServer(engine2, "127.0.0.1", port).start()
        wait_for(lambda: engine2.sites.get("site-1") is not None, what="re-registration")
        assert engine2.sites.names() == ["site-1"]
        wait_for(lambda: "host" in engine2.sites.get("site-1").info, what="heartbeats to resume")
        log = (tmp_path / "site-1" / "log.txt")
        sink.flush()
        assert "retrying in" in log.read_text()
    finally:
        agent.stop(timeout=5)
        transport.close()
        server.stop(0)
        sink.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("site-1-agent")]
