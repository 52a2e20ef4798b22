"""A federated run over gRPC: site agents with their own transports download the job from the
server, unpack it safely and train; nothing is shared with the server but the wire."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.client.agent import SiteAgent
from runtime.client.apps import DownloadedApps
from runtime.client.sitelog import LogSink
from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager
from runtime.transport.grpc_client import GrpcSiteTransport
from runtime.transport.grpc_server import FLServer

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"


def test_sites_download_the_job_and_train_over_grpc(tmp_path):
    engine = ServerEngine(tmp_path / "server")
    server = FLServer(engine).start()
    manager = JobManager(engine, ready_timeout=60, schedule_interval=0.05).start()
    sink = LogSink()
    sites = ["site-1", "site-2", "site-3"]
    agents, transports = [], []
    try:
        for name in sites:
            t = GrpcSiteTransport(server.address)
            transports.append(t)
            agent = SiteAgent(name, t, DownloadedApps(t, name, tmp_path / name), tmp_path / name,
                              sink, poll_timeout=0.5)
            agent.register()
            agent.start()
            agents.append(agent)
        job_id = manager.submit_folder(HELLO, "test", overrides={"num_rounds": 2})
        runner = manager.runner_for(job_id, timeout=60)
        assert runner is not None and sorted(runner.targets) == sites
        assert runner.wait(120) == "COMPLETED", runner.reason
        with np.load(runner.workspace.result_dir / "global_model.npz", allow_pickle=False) as d:
            w = d["weights"]
        start = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
        np.testing.assert_allclose(w, start + 2 * (1 + 2 + 3) / 3, atol=1e-12)
        # each site ran the job from its own unpacked copy, not from the examples folder
        for name in sites:
            unpacked = list((tmp_path / name / "jobs" / runner.job_id / "app").glob("*/*/app/custom/client.py"))
            assert len(unpacked) == 1
    finally:
        for agent in agents:
            agent.stop(timeout=5)
        for t in transports:
            t.close()
        manager.stop(abort_running=True, timeout=10)
        server.stop(0)
        engine.close()
        sink.close()
