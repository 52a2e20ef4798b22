"""POC end to end, as a user runs it: `flshell poc prepare/start`, submit and wait through
`flshell --poc DIR -c ...`, download the result, `poc stop`; twice in one run, no port clashes,
no process left behind."""

from __future__ import annotations

import time

import numpy as np

from tests.integration.conftest import HELLO_NUMPY, procs_mentioning, run_flshell


def test_poc_prepare_start_submit_wait_download_stop_twice(tmp_path):
    ports = []
    for attempt in (1, 2):
        poc = tmp_path / f"poc{attempt}"
        r = run_flshell("poc", "prepare", "-n", "2", "-w", poc)
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        r = run_flshell("poc", "start", "-w", poc)
        started_in = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        assert "admin 127.0.0.1:" in r.stdout
        print(f"poc start (CLI, incl. interpreter start): {started_in:.2f}s; {r.stdout.splitlines()[0]}")
        try:
            assert len(procs_mentioning(str(poc))) >= 3  # server + 2 sites
            r = run_flshell("--poc", poc, "-c", f"submit_job {HELLO_NUMPY}")
            assert r.returncode == 0, r.stdout + r.stderr
            job_id = r.stdout.strip().splitlines()[-1]
            assert len(job_id) == 36, r.stdout
            r = run_flshell("--poc", poc, "-c", f"wait_job {job_id[:8]} --timeout 90")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "COMPLETED" in r.stdout
            dest = tmp_path / f"download{attempt}"
            r = run_flshell("--poc", poc, "-c", f"download_job {job_id} {dest}")
            assert r.returncode == 0, r.stdout + r.stderr
            with np.load(dest / job_id / "result" / "global_model.npz", allow_pickle=False) as d:
                w = d["weights"]
            start = np.arange(1, 10, dtype=np.float64).reshape(3, 3)
            np.testing.assert_allclose(w, start + 5 * (1 + 2) / 2, atol=1e-12)  # 5 rounds, 2 sites
            logs = {p.name for p in (dest / job_id / "logs").iterdir()}
            assert {"server.log", "site-1.log", "site-2.log"} <= logs  # collected on the server
            manifest = (poc / "poc.json").read_text()
            ports.append(manifest)
        finally:
            t0 = time.monotonic()
            r = run_flshell("poc", "stop", "-w", poc)
            print(f"poc stop (CLI): {time.monotonic() - t0:.2f}s; {r.stdout.strip()}")
            assert r.returncode == 0, r.stderr
        left = procs_mentioning(str(poc))
        assert not left, [p.info["cmdline"] for p in left]
    assert ports[0] != ports[1]
