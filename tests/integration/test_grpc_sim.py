"""The simulator swaps the transport, nothing else: the same job over gRPC gives the same model."""

from __future__ import annotations

import numpy as np

from runtime.sim.simulator import Simulator
from tests.integration.test_fedavg_sim import make_job


def run(job, ws, transport):
    sim = Simulator(job, workspace=ws, n_clients=5, transport=transport)
    sim.prepare()
    sim.start()
    res = sim.wait()
    assert res.ok, res.reason
    with np.load(res.result_dir / "global_model.npz", allow_pickle=False) as d:
        return d["w"], res


def test_grpc_and_inproc_give_the_same_model(tmp_path):
    for mode in ("FULL", "DIFF"):
        job = make_job(tmp_path / mode, mode)
        a, _ = run(job, tmp_path / f"{mode}-inproc", "inproc")
        b, res = run(job, tmp_path / f"{mode}-grpc", "grpc")
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        assert (res.job_dir / "metrics.jsonl").read_text().count("\n") == 3


def test_site_failure_over_grpc_names_the_site(tmp_path):
    job = make_job(tmp_path, "FULL")
    client = job / "app" / "custom" / "client.py"
    client.write_text(client.read_text().replace(
        "    m = flare.receive()\n",
        "    m = flare.receive()\n    if k == 3:\n        raise RuntimeError('site three breaks')\n"))
    sim = Simulator(job, workspace=tmp_path / "ws", n_clients=4, transport="grpc")
    sim.prepare()
    sim.start()
    res = sim.wait()
    assert res.ok  # the job's min_clients is 1: the rounds go on without site-3
    rounds = (res.job_dir / "metrics.jsonl").read_text()
    assert '"sites_failed": ["site-3"]' in rounds
