"""`flshell sim` when things go wrong: failing site scripts and invalid job folders.

A failing site must either be tolerated (min_clients still met) or fail the job with exit 1 and
a message that names the site and the cause, never hang. An invalid job folder must stop before
anything runs, with exit 2 and one error that points at the file, JSON path and value.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.sim.simulator import Simulator
from tests.integration.conftest import (
    HELLO_NUMPY,
    copy_job,
    describe,
    edit_json,
    flat,
    job_dirs,
    only_job,
    sim,
)


def set_min_clients(job, value: int) -> None:
    def change(cfg):
        cfg["workflows"][0]["args"]["min_clients"] = value

    edit_json(job / "app" / "config" / "config_server.json", change)


def status_of(job_dir) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def server_log(job_dir) -> str:
    return (job_dir / "logs" / "server.log").read_text()


# ---- a site raises in round 2 ----------------------------------------------------------------


def test_site_failure_tolerated_when_min_clients_met(tmp_path, jobs):
    """raise_in_round2: site-2 raises in round 2; FedAvg needs 3 of the 4 results."""
    n, rounds = 4, 2
    ws = tmp_path / "ws"
    proc = sim(jobs / "raise_in_round2", "-n", n, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout
    assert "failed: site-2" in flat(proc.stdout), describe(proc)

    job = only_job(ws)
    assert status_of(job)["status"] == "COMPLETED"
    assert "task 'train' failed on site-2: ValueError: boom on purpose" in server_log(job)
    r1, r2 = (json.loads(p.read_text()) for p in sorted((job / "rounds").glob("round_*.json")))
    assert r1["sites_failed"] == [] and len(r1["sites_ok"]) == n
    assert r2["sites_failed"] == ["site-2"]
    assert sorted(r2["sites_ok"]) == ["site-1", "site-3", "site-4"]
    # every good result adds 1, so the mean is 1 per round whoever failed: site-2's missing
    # result did not drag the average down (nor count twice)
    with np.load(job / "result" / "global_model.npz", allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["weights"], np.full((2, 2), float(rounds)), rtol=0, atol=1e-12)
    site2 = (ws / "site-2" / "jobs" / job.name / "log.txt").read_text()
    assert "ValueError: boom on purpose" in site2


def test_site_failure_fails_the_job_when_min_clients_unreachable(tmp_path, jobs):
    job_src = copy_job(jobs / "raise_in_round2", tmp_path)
    set_min_clients(job_src, 4)
    ws = tmp_path / "ws"
    proc = sim(job_src, "-n", 4, "--rounds", 2, "-w", ws)
    assert proc.returncode == 1, describe(proc)
    out = flat(proc.stdout + proc.stderr)
    assert "FAILED" in out
    assert "site-2" in out
    assert "'train'" in out
    assert "ValueError: boom on purpose" in proc.stdout.splitlines()[-1], describe(proc)

    job = only_job(ws)
    status = status_of(job)
    assert status["status"] == "FAILED"
    assert status["failed_sites"] == ["site-2"]
    assert "round 2" in status["reason"], status["reason"]
    assert len(list((job / "rounds").glob("round_*.json"))) == 1  # round 1 completed, round 2 did not


def test_simulator_result_names_the_failed_site(tmp_path, jobs):
    """The same failure seen in-process, through SimulationResult."""
    job_src = copy_job(jobs / "raise_in_round2", tmp_path)
    set_min_clients(job_src, 4)
    sim_ = Simulator(job_src, workspace=tmp_path / "ws", n_clients=4, rounds=3)
    sim_.prepare()
    sim_.start()
    result = sim_.wait(timeout=120)
    assert result.status == "FAILED", result
    assert result.failed_sites == ["site-2"]
    assert result.failure_details["site-2"].strip().splitlines()[-1] == "ValueError: boom on purpose"
    assert result.rounds_completed == 1 and result.total_rounds == 3
    assert result.workspace == (tmp_path / "ws").resolve()
    assert result.job_dir == result.workspace / "server" / "jobs" / result.job_id
    assert result.result_dir.is_dir() and result.job_dir.is_dir()
    assert "ValueError: boom on purpose" in result.site_log("site-2").read_text()


# ---- a script exits or returns early ---------------------------------------------------------


def test_script_sys_exit_fails_the_job(tmp_path, jobs):
    """exit_in_round1: site-2 calls sys.exit(3) in round 1; every site's result is required."""
    ws = tmp_path / "ws"
    proc = sim(jobs / "exit_in_round1", "-n", 4, "--rounds", 2, "-w", ws)
    assert proc.returncode == 1, describe(proc)
    out = flat(proc.stdout + proc.stderr)
    assert "FAILED" in out
    assert "site-2" in out and "sys.exit(3)" in out, describe(proc)
    status = status_of(only_job(ws))
    assert status["status"] == "FAILED" and status["failed_sites"] == ["site-2"]
    assert "sys.exit(3)" in status["failure_details"]["site-2"]


def test_script_returning_without_a_result_fails_the_job(tmp_path, jobs):
    """return_without_send: site-2 leaves its loop after receive(), without send()."""
    ws = tmp_path / "ws"
    proc = sim(jobs / "return_without_send", "-n", 4, "--rounds", 2, "-w", ws)
    assert proc.returncode == 1, describe(proc)
    out = flat(proc.stdout + proc.stderr)
    assert "FAILED" in out and "site-2" in out
    assert "exited without sending a result" in out, describe(proc)
    status = status_of(only_job(ws))
    assert status["failed_sites"] == ["site-2"]


# ---- invalid job folders ---------------------------------------------------------------------
# Each case is a copy of hello-numpy (which runs: test_edited_copy_of_hello_numpy_still_runs)
# with one thing broken, and the parts the error must name.


def _no_job(job):
    for p in sorted(job.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (job / "notes.txt").write_text("not a job\n")
    return [str(job), "meta.json", "config/", "not a job folder"]


def _bad_json(job):
    (job / "meta.json").write_text(
        '{\n  "name": "hello",\n  "deploy_map": {"app": ["server", "@ALL"]}\n  "min_clients": 2\n}\n'
    )
    return ["meta.json", "invalid JSON", "line 4", "column 3"]


def _unknown_component(job):
    def change(cfg):
        cfg["workflows"][0]["path"] = "runtime.no_such_module.FedAvg"

    edit_json(job / "app" / "config" / "config_server.json", change)
    return ["app/config/config_server.json", "workflows[0].path", "runtime.no_such_module"]


def _wrong_arg_type(job):
    def change(cfg):
        cfg["workflows"][0]["args"]["num_rounds"] = "five"

    edit_json(job / "app" / "config" / "config_server.json", change)
    return ["app/config/config_server.json", "workflows[0].args.num_rounds", '"five"']


def _deploy_map_without_folder(job):
    def change(meta):
        meta["deploy_map"] = {"trainer": ["server", "@ALL"]}

    edit_json(job / "meta.json", change)
    return ["meta.json", "deploy_map", "trainer"]


def _missing_script(job):
    def change(cfg):
        cfg["executors"][0]["executor"]["args"]["script"] = "no_such_train.py"

    edit_json(job / "app" / "config" / "config_client.json", change)
    return ["app/config/config_client.json", "executors[0].executor.args.script", "no_such_train.py"]


INVALID = {
    "no-meta-json": _no_job,
    "bad-json": _bad_json,
    "unknown-component": _unknown_component,
    "wrong-arg-type": _wrong_arg_type,
    "deploy-map-without-folder": _deploy_map_without_folder,
    "missing-script": _missing_script,
}


def _broken_job(tmp_path, case: str):
    job = copy_job(HELLO_NUMPY, tmp_path, "hello")
    return job, INVALID[case](job)


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_job_folder_is_one_clear_error(tmp_path, case):
    job, must_name = _broken_job(tmp_path, case)
    ws = tmp_path / "ws"
    proc = sim(job, "-n", 2, "-w", ws)  # no --rounds: it would replace a bad num_rounds
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == "", describe(proc)
    err = flat(proc.stderr)
    assert err.startswith("error: "), describe(proc)
    assert err.count("error:") == 1 and "Traceback" not in err, describe(proc)
    # compared without whitespace: rich may break (even inside) a long path at 80 columns
    squeezed = "".join(err.split())
    for part in must_name:
        assert "".join(part.split()) in squeezed, f"{part!r} not in: {err}"
    # nothing ran: no site folders, no round records
    assert not any(p.name.startswith("site-") for p in ws.glob("*")), list(ws.glob("*"))
    assert not list(ws.glob("server/jobs/*/rounds/*"))


@pytest.mark.parametrize("case", ["no-meta-json", "unknown-component", "missing-script"])
def test_long_invalid_job_error_stays_on_one_line(tmp_path, case):
    """These three messages are always longer than 80 characters (a tmp path twice, a module
    path, a list of places looked in): the one error must still be one line."""
    job, _ = _broken_job(tmp_path, case)
    proc = sim(job, "-n", 2, "-w", tmp_path / "ws")
    assert proc.returncode == 2, describe(proc)
    assert len(proc.stderr.rstrip("\n").splitlines()) == 1, describe(proc)


@pytest.mark.parametrize("case", ["unknown-component", "wrong-arg-type", "missing-script"])
def test_invalid_job_leaves_no_job_folder(tmp_path, case):
    job, _ = _broken_job(tmp_path, case)
    ws = tmp_path / "ws"
    proc = sim(job, "-n", 2, "-w", ws)
    assert proc.returncode == 2, describe(proc)
    assert job_dirs(ws) == [], job_dirs(ws)


def test_edited_copy_of_hello_numpy_still_runs(tmp_path):
    """The cases above break copies of hello-numpy; an unbroken copy runs, so each error comes
    from its one edit."""
    job = copy_job(HELLO_NUMPY, tmp_path, "hello")
    ws = tmp_path / "ws"
    proc = sim(job, "-n", 2, "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert proc.stderr == "", describe(proc)


# ---- error text is printed as written --------------------------------------------------------



def _value_with_brackets(job):
    def change(cfg):
        cfg["workflows"][0]["args"]["num_rounds"] = "[bold]five[/bold]"

    edit_json(job / "app" / "config" / "config_server.json", change)


@pytest.mark.parametrize(
    "args, break_job, must_name",
    [
        (["-c", "alpha,[x]"], None, "[x]"),
        (["-c", "alpha,[/x]"], None, "[/x]"),
        (["-n", "2"], _value_with_brackets, '"[bold]five[/bold]"'),
    ],
    ids=["site-name-tag", "site-name-closing-tag", "config-value-tags"],
)
def test_usage_error_shows_the_offending_text(tmp_path, args, break_job, must_name):
    job = copy_job(HELLO_NUMPY, tmp_path, "hello")
    if break_job is not None:
        break_job(job)
    proc = sim(job, *args, "-w", tmp_path / "ws")
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == ""
    err = flat(proc.stderr)
    assert err.startswith("error: ") and "Traceback" not in err, describe(proc)
    assert must_name in err, describe(proc)


# ---- sites the deploy_map gives no app -------------------------------------------------------


def _deploy_to(job, *sites: str) -> None:
    def change(meta):
        meta["deploy_map"] = {"app": ["server", *sites]}

    edit_json(job / "meta.json", change)


def test_a_site_the_deploy_map_leaves_out_is_reported_before_the_run(tmp_path):
    """-n 3 on a job deployed to site-1 and site-2: site-3 would sit idle; say so, up front."""
    job = copy_job(HELLO_NUMPY, tmp_path, "hello")
    _deploy_to(job, "site-1", "site-2")
    ws = tmp_path / "ws"
    proc = sim(job, "-n", 3, "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    warning = flat(proc.stderr)
    assert "site-3" in warning and "deploy_map" in warning and "meta.json" in warning, describe(proc)
    assert "site-1" not in warning.split("names")[0], describe(proc)  # only the idle site is named idle
    # the summary says it too, and the round really ran on the two others only
    assert "idle sites site-3 (meta.json's deploy_map gives it no app)" in flat(proc.stdout), describe(proc)
    (record,) = [json.loads(p.read_text()) for p in (only_job(ws) / "rounds").glob("round_*.json")]
    assert record["sites_ok"] == ["site-1", "site-2"]


def test_no_simulated_site_in_the_deploy_map_is_an_error_naming_both_sides(tmp_path):
    job = copy_job(HELLO_NUMPY, tmp_path, "hello")
    _deploy_to(job, "site-1", "site-2")
    ws = tmp_path / "ws"
    proc = sim(job, "-c", "alpha,beta", "-w", ws)
    assert proc.returncode == 2, describe(proc)
    err = flat(proc.stderr)
    assert err.startswith("error: meta.json: deploy_map") and err.count("error:") == 1, describe(proc)
    for name in ("alpha", "beta", "site-1", "site-2"):
        assert name in err, describe(proc)
    assert "-c site-1,site-2" in err, describe(proc)  # what to run instead
    assert job_dirs(ws) == []


# ---- a tolerated site failure is still reported -----------------------------------------------


def test_completed_summary_names_a_site_that_failed_every_round(tmp_path, jobs):
    """fail_every_round: site-3 raises in each of the 5 rounds; FedAvg needs 2 results, so the
    job completes. The summary must not hide it."""
    ws = tmp_path / "ws"
    proc = sim(jobs / "fail_every_round", "-n", 3, "-w", ws, "-q")
    assert proc.returncode == 0, describe(proc)
    out = flat(proc.stdout)
    assert "COMPLETED" in out
    assert ("site-3 failed in all 5 rounds: OSError: cannot read /data/site-3/train.csv (round 1)"
            in out), describe(proc)
    assert "site-1 failed" not in out and "site-2 failed" not in out, describe(proc)
    records = [json.loads(p.read_text()) for p in sorted((only_job(ws) / "rounds").glob("round_*.json"))]
    assert [r["sites_failed"] for r in records] == [["site-3"]] * 5  # what the summary counted


def test_summary_counts_a_site_that_failed_some_rounds(tmp_path, jobs):
    """raise_in_round2 on 4 sites: site-2 fails round 2 of 2 (tolerated: 3 results needed)."""
    proc = sim(jobs / "raise_in_round2", "-n", 4, "--rounds", 2, "-w", tmp_path / "ws")
    assert proc.returncode == 0, describe(proc)
    assert "site-2 failed in 1 of 2 rounds: ValueError: boom on purpose" in flat(proc.stdout), describe(proc)
