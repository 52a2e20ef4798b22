"""The first round waits for the job's sites; a site that cannot start is named, never ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runtime.sim.simulator import Simulator

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"

PICKY = '''
class Picky:
    """Refuses to start on one site, as a site with a broken local setup would."""

    def __init__(self, site: str):
        if site == "site-2":
            raise RuntimeError("site-2 has no data folder")
'''


def picky_job(tmp_path: Path, min_clients: int) -> Path:
    job = tmp_path / "job"
    shutil.copytree(HELLO, job)
    meta = json.loads((job / "meta.json").read_text())
    meta["min_clients"] = min_clients
    (job / "meta.json").write_text(json.dumps(meta))
    cfg_path = job / "app" / "config" / "config_client.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["components"] = [{"id": "picky", "path": "picky.Picky", "args": {"site": "{SITE_NAME}"}}]
    cfg_path.write_text(json.dumps(cfg))
    (job / "app" / "custom" / "picky.py").write_text(PICKY)
    return job


def run(job: Path, ws: Path, n: int):
    sim = Simulator(job, workspace=ws, n_clients=n, rounds=1)
    sim.prepare()  # builds the client app for site-1: fine
    sim.start()
    return sim.wait()


def test_site_that_cannot_start_fails_the_job_when_min_clients_needs_it(tmp_path):
    res = run(picky_job(tmp_path, min_clients=3), tmp_path / "ws", 3)
    assert res.status == "FAILED"
    assert "2 of 3 sites ready, min_clients=3" in res.reason
    assert "failed to start: site-2" in res.reason
    assert "site-2 has no data folder" in res.failure_details["site-2"]
    assert res.rounds_completed == 0  # no round ran with fewer sites


def test_job_starts_without_it_when_min_clients_allows_and_says_so(tmp_path):
    res = run(picky_job(tmp_path, min_clients=2), tmp_path / "ws", 3)
    assert res.ok
    record = json.loads((res.job_dir / "rounds" / "round_00000.json").read_text())
    assert record["sites_ok"] == ["site-1", "site-3"]
    log = res.server_log.read_text()
    assert "starting with 2 of 3 sites" in log and "site-2" in log
