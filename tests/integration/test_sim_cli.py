"""`flshell sim` end to end: runs that should succeed, and what they leave in the workspace.

Each test runs the real CLI in a subprocess (see conftest.py) on a workspace under tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.integration.conftest import (
    HELLO_INITIAL,
    REPO,
    SIM_TIMEOUT,
    _cli_env,
    copy_job,
    describe,
    edit_json,
    flat,
    run_flshell,
    job_dirs,
    only_job,
    sim,
)


def site_number(name: str) -> int:
    """What hello-numpy's client.py adds each round: the number at the end of the site name."""
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 1


def expected_hello_model(sites: list[str], rounds: int) -> np.ndarray:
    """FedAvg with equal weights: each round the global model grows by the sites' mean delta."""
    mean_delta = sum(site_number(s) for s in sites) / len(sites)
    return np.asarray(HELLO_INITIAL, dtype=np.float64) + rounds * mean_delta


def load_global_model(job_dir) -> np.ndarray:
    with np.load(job_dir / "result" / "global_model.npz", allow_pickle=False) as saved:
        assert saved.files == ["weights"], saved.files
        return saved["weights"]


def round_records(job_dir) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((job_dir / "rounds").glob("round_*.json"))]


def site_log(workspace, site: str, job_dir) -> str:
    path = workspace / site / "jobs" / job_dir.name / "log.txt"
    assert path.is_file(), f"no log for {site} at {path}"
    return path.read_text()


# ---- hello-numpy -----------------------------------------------------------------------------


def test_hello_numpy_eight_sites_two_rounds(tmp_path, hello_numpy):
    n, rounds = 8, 2
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", n, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout, describe(proc)

    job = only_job(ws)
    sites = [f"site-{k}" for k in range(1, n + 1)]
    # every site k added k per round: the mean, (N + 1) / 2, per round on top of the initial weights
    expected = np.asarray(HELLO_INITIAL) + rounds * (n + 1) / 2
    np.testing.assert_allclose(load_global_model(job), expected, rtol=0, atol=1e-12)

    metrics = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [m["round"] for m in metrics] == list(range(rounds))
    assert all(sorted(m["sites_ok"]) == sorted(sites) for m in metrics), metrics

    log3 = site_log(ws, "site-3", job)
    assert "site-3: adding" in log3
    # the script's prints went to its own site's log, not a neighbour's
    for site in sites:
        log = site_log(ws, site, job)
        adding = [ln for ln in log.splitlines() if ": adding" in ln]
        assert adding == [f"{site}: adding {float(site_number(site))} each round"], (site, log)


def test_named_sites(tmp_path, hello_numpy):
    sites, rounds = ["alpha-1", "beta-2"], 2
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-c", ",".join(sites), "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout

    job = only_job(ws)
    np.testing.assert_allclose(load_global_model(job), expected_hello_model(sites, rounds), rtol=0, atol=1e-12)
    assert sorted(p.name for p in ws.iterdir() if p.name != "server") == sorted(sites)
    for site in sites:
        assert f"{site}: adding" in site_log(ws, site, job)
    assert [r["sites_ok"] for r in round_records(job)] == [sorted(sites)] * rounds


@pytest.mark.parametrize(
    "n, threads, rounds",
    [(100, 2, 1), (8, 2, 2)],
    ids=["100-sites-2-threads", "8-sites-2-threads"],
)
def test_thread_limit_runs_every_site(tmp_path, hello_numpy, n, threads, rounds):
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", n, "-t", threads, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout

    job = only_job(ws)
    sites = [f"site-{k}" for k in range(1, n + 1)]
    np.testing.assert_allclose(load_global_model(job), expected_hello_model(sites, rounds), rtol=0, atol=1e-12)
    records = round_records(job)
    assert len(records) == rounds
    assert all(sorted(r["sites_ok"]) == sorted(sites) for r in records)


def test_more_sites_than_the_cap_is_refused(tmp_path, hello_numpy):
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", 101, "-w", ws)
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == ""
    err = flat(proc.stderr)
    assert "101" in err and "-m" in err, describe(proc)
    assert not ws.exists(), "a refused run must not start anything"


def test_raising_the_cap_allows_more_sites(tmp_path, hello_numpy):
    n, rounds = 101, 1
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", n, "-m", n, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout

    job = only_job(ws)
    sites = [f"site-{k}" for k in range(1, n + 1)]
    np.testing.assert_allclose(load_global_model(job), expected_hello_model(sites, rounds), rtol=0, atol=1e-12)
    assert len(round_records(job)[0]["sites_ok"]) == n


def test_bare_app_folder_runs_on_every_site(tmp_path, hello_numpy):
    n, rounds = 3, 1
    ws = tmp_path / "ws"
    proc = sim(hello_numpy / "app", "-n", n, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout

    job = only_job(ws)
    sites = [f"site-{k}" for k in range(1, n + 1)]
    np.testing.assert_allclose(load_global_model(job), expected_hello_model(sites, rounds), rtol=0, atol=1e-12)
    assert round_records(job)[0]["sites_ok"] == sites


# ---- the workspace across runs ---------------------------------------------------------------


def test_rerun_into_the_same_workspace_keeps_the_first_job(tmp_path, hello_numpy):
    ws = tmp_path / "ws"
    first = sim(hello_numpy, "-n", 2, "--rounds", 1, "-w", ws)
    assert first.returncode == 0, describe(first)
    (job1,) = job_dirs(ws)
    before = {p.relative_to(ws): p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    assert any(job1.name in str(p) for p in before)

    second = sim(hello_numpy, "-n", 3, "--rounds", 2, "-w", ws)
    assert second.returncode == 0, describe(second)
    jobs = job_dirs(ws)
    assert len(jobs) == 2 and job1 in jobs, jobs
    (job2,) = [j for j in jobs if j != job1]
    assert job2.name in second.stdout and job2.name not in first.stdout

    # every file of the first run is still there, byte for byte (the job index, jobs.db, now
    # lists both runs)
    after = {p.relative_to(ws): p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    for rel, data in before.items():
        if not rel.name.startswith("jobs.db"):
            assert after.get(rel) == data, f"{rel} changed or vanished"
    from runtime.server.job_store import JobStore

    with JobStore(ws / "server") as store:
        assert {r.job_id for r in store.list()} == {job1.name, job2.name}
    # and the second run has its own results: 3 sites, 2 rounds
    sites = ["site-1", "site-2", "site-3"]
    np.testing.assert_allclose(load_global_model(job2), expected_hello_model(sites, 2), rtol=0, atol=1e-12)
    np.testing.assert_allclose(load_global_model(job1), expected_hello_model(sites[:2], 1), rtol=0, atol=1e-12)
    assert "site-3: adding" in site_log(ws, "site-3", job2)


def test_completed_job_has_no_stale_reason(tmp_path, hello_numpy):
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", 2, "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    status = json.loads((only_job(ws) / "status.json").read_text())
    assert status["status"] == "COMPLETED"
    assert status["reason"] is None, status


# ---- help ------------------------------------------------------------------------------------


def test_sim_help_documents_the_options():
    proc = run_flshell("sim", "--help")
    assert proc.returncode == 0, describe(proc)
    for option in ("-n", "-c", "-t", "-gpu", "-m", "--rounds", "-w"):
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", proc.stdout), f"{option} not in help"
    assert "usage: flshell sim" in proc.stdout


def test_top_level_help_lists_sim():
    proc = run_flshell("--help")
    assert proc.returncode == 0, describe(proc)
    assert re.search(r"^\s+sim\s+\S", proc.stdout, re.M), proc.stdout


# ---- what each site's script sees ------------------------------------------------------------


def _site_lines(ws, site: str, job, prefix: str) -> list[str]:
    return [ln for ln in site_log(ws, site, job).splitlines() if ln.startswith(prefix)]


def test_sites_see_their_own_names_concurrently(tmp_path, jobs):
    """site_info: site-1 and site-2 meet inside their first task (so scripts provably overlap),
    every site sends its number as a metric and logs its name after a sleep inside each task."""
    n, rounds = 6, 2
    ws = tmp_path / "ws"
    proc = sim(jobs / "site_info", "-n", n, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    job = only_job(ws)
    sites = [f"site-{k}" for k in range(1, n + 1)]

    records = round_records(job)
    assert len(records) == rounds
    for record in records:
        assert sorted(record["sites_ok"]) == sorted(sites), record
        # each site reported its own number: their mean is (N + 1) / 2 only if none is duplicated
        assert record["metrics"]["site_no"] == pytest.approx((n + 1) / 2, abs=1e-12)
    weights = load_global_model(job)
    np.testing.assert_allclose(weights, np.zeros((2, 2)) + rounds * (n + 1) / 2, rtol=0, atol=1e-12)

    for site in sites:
        assert _site_lines(ws, site, job, "system_info ") == [f"system_info site_name={site} gpu=None"]
        seen = _site_lines(ws, site, job, "round ")
        assert len(seen) == rounds, (site, seen)
        assert all(f"name_now={site} " in line for line in seen), (site, seen)


def test_thread_limit_caps_sites_inside_a_task(tmp_path, jobs):
    """-t 2: never more than two scripts between receive() and send() at once."""
    n, threads, rounds = 6, 2, 2
    ws = tmp_path / "ws"
    proc = sim(jobs / "site_info", "-n", n, "-t", threads, "--rounds", rounds, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    job = only_job(ws)

    inside, taken = [], []
    for k in range(1, n + 1):
        for line in _site_lines(ws, f"site-{k}", job, "round "):
            m = re.search(r"inside=(\d+) taken=(\d+)", line)
            assert m, line
            inside.append(int(m.group(1)))
            taken.append(int(m.group(2)))
    # the tally is shared by all sites (else the counts below would mean nothing)
    assert sorted(taken) == list(range(1, n * rounds + 1))
    assert 1 <= max(inside) <= threads, inside


@pytest.mark.parametrize(
    "gpu, expected",
    [("0,1", ["0", "1", "0", "1"]), ("[0,1],[2,3]", ["0,1", "2,3", "0,1", "2,3"])],
    ids=["ids", "groups"],
)
def test_gpu_ids_round_robin_over_sites(tmp_path, jobs, gpu, expected):
    """-gpu implies worker processes, one per GPU group: site i runs in the worker of group
    i mod G, whose CUDA_VISIBLE_DEVICES is that group (no GPU here: the ids are only pinned)."""
    n = len(expected)
    ws = tmp_path / "ws"
    proc = sim(jobs / "site_info", "-n", n, "-gpu", gpu, "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    assert "in 2 worker processes" in proc.stdout, describe(proc)
    job = only_job(ws)
    pids = {}
    for k, want in enumerate(expected, start=1):
        site = f"site-{k}"
        assert _site_lines(ws, site, job, "system_info ") == [f"system_info site_name={site} gpu={want}"]
        (line,) = _site_lines(ws, site, job, "process ")
        m = re.fullmatch(r"process pid=(\d+) worker=(\d+) cuda_visible=(\S+) omp=(\d+)", line)
        assert m and m.group(3) == want, line
        # the two workers share the cores: each its share of threads, at least 1
        assert int(m.group(4)) == max(1, (os.cpu_count() or 1) // 2), line
        pids.setdefault(want, set()).add(int(m.group(1)))
    # one worker process per group, and the groups' workers are different processes
    assert all(len(p) == 1 for p in pids.values()), pids
    assert len(set().union(*pids.values())) == 2, pids



# ---- printing user text ----------------------------------------------------------------------



def test_metric_names_with_brackets_are_printed_as_written(tmp_path, jobs):
    """bracket_metrics: sites report "loss[val]" and "acc[/top1]"."""
    ws = tmp_path / "ws"
    proc = sim(jobs / "bracket_metrics", "-n", 2, "--rounds", 1, "-w", ws)
    # the job itself records the names as sent
    records = [json.loads(p.read_text()) for p in sorted((only_job(ws) / "rounds").glob("round_*.json"))]
    assert records and sorted(records[0]["metrics"]) == ["acc[/top1]", "loss[val]"]
    # and the CLI shows them
    assert proc.returncode == 0, describe(proc)
    assert "COMPLETED" in proc.stdout
    assert "loss[val]=0.5" in proc.stdout and "acc[/top1]=0.25" in proc.stdout, describe(proc)


def test_workers_keep_the_users_thread_count(tmp_path, jobs, monkeypatch):
    """OMP_NUM_THREADS set by the user reaches every worker as it is."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    ws = tmp_path / "ws"
    proc = sim(jobs / "site_info", "-n", 2, "-t", 2, "--processes", "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    job = only_job(ws)
    for site in ("site-1", "site-2"):
        (line,) = _site_lines(ws, site, job, "process ")
        assert line.endswith(" omp=3"), line


# ---- what is printed -------------------------------------------------------------------------


def test_quiet_prints_only_the_summary(tmp_path, hello_numpy):
    ws = tmp_path / "ws"
    proc = sim(hello_numpy, "-n", 2, "--rounds", 1, "-w", ws, "-q")
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["status", "COMPLETED"], describe(proc)
    assert "admin port" not in proc.stdout and "simulating" not in proc.stdout, describe(proc)
    assert not any(ln.startswith("round ") for ln in lines), describe(proc)
    assert proc.stderr == "", describe(proc)


def test_lines_are_not_wrapped_into_a_pipe(tmp_path, hello_numpy):
    """Piped output is for grep and copy: no line is broken at 80 columns, least of all a path."""
    ws = tmp_path / ("a-workspace-whose-name-alone-takes-up-most-of-an-80-column-terminal-line")
    proc = sim(hello_numpy, "-n", 2, "--rounds", 1, "-w", ws)
    assert proc.returncode == 0, describe(proc)
    job = only_job(ws)
    lines = proc.stdout.splitlines()
    for key, path in [("global model", job / "result" / "global_model.npz"),
                      ("server log", job / "logs" / "server.log"),
                      ("site logs", ws / "<site>" / "jobs" / job.name / "log.txt")]:
        (line,) = [ln for ln in lines if ln.startswith(key)]
        assert line.split() == [*key.split(), str(path)], describe(proc)
    assert any(ln.startswith("simulating") and ln.endswith(f"workspace {ws}") for ln in lines), describe(proc)


# ---- hello-numpy-long ------------------------------------------------------------------------

NO_TORCH = """\
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ModuleNotFoundError("No module named 'torch'")
sys.meta_path.insert(0, NoTorch())
from flshell.cli import main
code = main(sys.argv[1:])
assert 'torch' not in sys.modules
sys.exit(code)
"""


def test_hello_numpy_long_trains_for_its_time_budget_without_torch(tmp_path):
    """The example to watch, attach to and abort: 60 rounds of ~1.5 s by default; here 3 rounds
    of 0.5 s, in a process where torch cannot be imported."""
    src = REPO / "examples" / "hello-numpy-long"
    server_cfg = json.loads((src / "app" / "config" / "config_server.json").read_text())
    client_cfg = json.loads((src / "app" / "config" / "config_client.json").read_text())
    assert server_cfg["num_rounds"] == 60  # what README promises
    assert client_cfg["executors"][0]["executor"]["args"]["script_args"] == "--seconds 1.5"
    job = copy_job(src, tmp_path)

    def half_a_second(cfg):
        cfg["executors"][0]["executor"]["args"]["script_args"] = "--seconds 0.5"

    edit_json(job / "app" / "config" / "config_client.json", half_a_second)
    ws = tmp_path / "ws"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "sim", str(job), "-n", "2", "--rounds", "3",
                           "-w", str(ws)], cwd=REPO, env=_cli_env(), capture_output=True, text=True,
                          timeout=SIM_TIMEOUT)
    assert proc.returncode == 0, describe(proc)
    records = round_records(only_job(ws))
    assert len(records) == 3
    assert all(r["seconds"] >= 0.5 for r in records), records  # each site trained its budget
    accuracy = [r["metrics"]["accuracy"] for r in records]  # of the model each round sent out
    assert accuracy[2] > accuracy[0], accuracy  # two rounds of training beat the random start
    for site in ("site-1", "site-2"):
        steps = re.findall(r"round \d+/3: (\d+) steps", site_log(ws, site, only_job(ws)))
        assert len(steps) == 3 and all(int(s) >= 1 for s in steps), steps
