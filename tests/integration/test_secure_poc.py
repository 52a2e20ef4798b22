"""Startup kits in real processes: an altered kit refuses to start and names its file; the secure
POC (the default) end to end with mutual TLS; a provisioned federation started with the kits'
own start.sh / stop.sh, with recipes submitted through admin kits (ProdEnv)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from provisioning import parse_project, provision
from runtime.admin import ServerUnreachable, Session
from runtime.recipes import EnvError, NumpyFedAvgRecipe, ProdEnv
from tests.integration.conftest import procs_mentioning, run_flshell
from tests.integration.secure_fed import HELLO, REPO, make_prod, wait_for

WAIT = 120
SCRIPT = REPO / "tests" / "integration" / "recipe_scripts" / "np_client.py"


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b'"name"') + 2  # a letter of the key: still valid JSON, another file
    data[i] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("who, command, config", [
    ("localhost", "server", "fed_server.json"),
    ("site-1", "client", "fed_client.json"),
])
def test_a_kit_with_one_byte_changed_refuses_to_start_and_says_which_file(tmp_path, who, command,
                                                                            config):
    prod = make_prod(tmp_path)
    _flip_one_byte(prod / who / "startup" / config)
    r = run_flshell(command, "--startup", prod / who, "--workspace", tmp_path / "ws")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{config}: changed" in r.stderr and "Refusing to use it" in r.stderr, r.stderr
    assert not (tmp_path / "ws" / "jobs.db").exists()  # nothing started
    # the kit's own start.sh says so too, and leaves no pid file behind
    env = {**os.environ, "FLSHELL": f"{sys.executable} -m flshell.cli", "PYTHONPATH": str(REPO)}
    r = subprocess.run([str(prod / who / "startup" / "start.sh")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and f"{config}: changed" in r.stderr, r.stdout + r.stderr
    assert not (prod / who / "flshell.pid").exists()


def test_secure_poc_start_submit_wait_download_with_mutual_tls(tmp_path):
    poc, dest = tmp_path / "poc", tmp_path / "dest"
    r = run_flshell("poc", "prepare", "-n", "2", "-w", poc)
    assert r.returncode == 0 and "mutual TLS" in r.stdout, r.stdout + r.stderr
    m = json.loads((poc / "poc.json").read_text())
    assert m["secure"] and Path(m["admin_kit"]) == poc / "prod" / "admin@poc"
    assert not any((poc / "prod" / n / "startup" / "rootCA.key").exists() for n in m["kits"])
    r = run_flshell("poc", "start", "-w", poc)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        cmdlines = [" ".join(p.info["cmdline"]) for p in procs_mentioning(str(poc))]
        assert len(cmdlines) >= 3 and all("--startup" in c and "--insecure" not in c
                                          for c in cmdlines), cmdlines
        r = run_flshell("--poc", poc, "-c",
                        f"submit_job {HELLO}; wait_job last --timeout 90; download_job last {dest}")
        assert r.returncode == 0, r.stdout + r.stderr
        job_id = r.stdout.split()[0]
        assert "COMPLETED" in r.stdout
        with np.load(dest / job_id / "result" / "global_model.npz", allow_pickle=False) as d:
            np.testing.assert_allclose(d["weights"], np.arange(1, 10).reshape(3, 3) + 7.5)
        # plain text gets nowhere on either port
        with Session(m["admin_address"], timeout=3) as s:
            with pytest.raises(ServerUnreachable):
                s.list_jobs()
        audit = [json.loads(x) for x in (poc / "server" / "audit.log").read_text().splitlines()]
        assert {a["user"] for a in audit if a["command"] == "submit_job"} == {"admin@poc"}
        assert any(a["job"] == job_id and a["verdict"] == "COMPLETED" for a in audit)
        r = run_flshell("poc", "status", "-w", poc)
        assert "mutual TLS" in r.stdout and "site-1" in r.stdout, r.stdout
    finally:
        r = run_flshell("poc", "stop", "-w", poc)
        assert r.returncode == 0, r.stderr
    assert not procs_mentioning(str(poc))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROJECT = """\
name: prodtest
participants:
  - {{type: server, name: localhost, host: 127.0.0.1, fl_port: {fl}, admin_port: {admin}}}
  - {{type: client, name: site-1, org: org-a}}
  - {{type: client, name: site-2, org: org-b}}
  - {{type: admin, name: lead@org-a.com, org: org-a, role: lead}}
  - {{type: admin, name: viewer@org-b.com, org: org-b, role: member}}
"""


def test_a_provisioned_federation_from_its_start_scripts_runs_recipes_through_admin_kits(tmp_path):
    prod = tmp_path / "prod"
    provision(parse_project(PROJECT.format(fl=_free_port(), admin=_free_port())), prod)
    resources = prod / "localhost" / "local" / "resources.json"
    resources.write_text(json.dumps({"max_jobs": 2, "heartbeat_interval": 1.0}))
    env = {**os.environ, "FLSHELL": f"{sys.executable} -m flshell.cli", "PYTHONPATH": str(REPO),
           "STOP_TIMEOUT": "20"}
    started = []
    try:
        for who in ("localhost", "site-1", "site-2"):
            r = subprocess.run([str(prod / who / "startup" / "start.sh")], env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            started.append(who)
        kit = prod / "lead@org-a.com"
        with Session.from_startup_kit(kit, timeout=5) as s:  # the address is the kit's
            wait_for(lambda: len([x for x in s.list_sites() if x["status"] == "CONNECTED"]) == 2,
                     "both sites", 60, 0.2)
        recipe = NumpyFedAvgRecipe(name="np-prod", min_clients=2, num_rounds=2,
                                   train_script=str(SCRIPT), initial_model={"w": np.zeros(3)},
                                   key_metric="score")
        run = recipe.execute(ProdEnv(prod, username="lead@org-a.com", num_clients=2,
                                     workspace_root=tmp_path / "runs", timeout=WAIT))
        assert run.get_status() == "COMPLETED", run.get_job()
        with np.load(Path(run.get_result()) / "global_model.npz", allow_pickle=False) as d:
            np.testing.assert_allclose(d["w"], [3.0] * 3)  # 2 rounds of mean(1, 2)
        assert run.get_job()["submitter"] == "lead@org-a.com"
        with pytest.raises(EnvError, match="refused: member cannot submit_job"):
            recipe.execute(ProdEnv(prod / "viewer@org-b.com", workspace_root=tmp_path / "runs"))
        with pytest.raises(EnvError, match="is the kit of lead@org-a.com, not of someone@else"):
            ProdEnv(kit, username="someone@else")
    finally:
        for who in reversed(started):
            r = subprocess.run([str(prod / who / "startup" / "stop.sh")], env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    for who in ("localhost", "site-1", "site-2"):
        log = (prod / who / "stdout.log").read_text()
        assert "Traceback" not in log, log
    assert "mutual TLS as localhost" in (prod / "localhost" / "stdout.log").read_text()
    assert not procs_mentioning(str(prod))
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
