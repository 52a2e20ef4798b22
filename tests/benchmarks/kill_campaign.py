"""Kill campaign: SIGKILL `flshell server` at random moments while a job runs on `flshell
client` sites, restart it on the same workspace and ports each time, and check that the job
still completes with every round recorded exactly once and the exact model.

    python tests/benchmarks/kill_campaign.py [--kills 50] [--rounds 60] [--sites 2] [--seed 1]

hello-numpy's sites add their index k to the weights each round, so after R rounds the global
model is start + R * mean(k): a round lost or run twice shows in the model. Also prints how long
each restart took until the next round was recorded.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.procfed import ProcFederation, slow_hello, wait_until  # noqa: E402

START = np.arange(1, 10, dtype=np.float64).reshape(3, 3)


def rounds(fed: ProcFederation, job_id: str) -> list[dict]:
    with fed.session(timeout=30) as s:
        return s.get_job(job_id)["rounds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--sites", type=int, default=2)
    ap.add_argument("--sleep", type=float, default=0.3, help="seconds each site trains per round")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        job = slow_hello(root, rounds=args.rounds, sleep=args.sleep)
        with ProcFederation(root) as fed:
            fed.start_server()
            for i in range(1, args.sites + 1):
                fed.start_client(f"site-{i}")
            fed.wait_sites(args.sites)
            with fed.session() as s:
                job_id = s.submit_job(job)
            t0 = time.monotonic()
            resumes: list[float] = []
            kills = 0
            while kills < args.kills:
                time.sleep(rng.uniform(0.2, 3.0))  # a random moment: start, mid-round, between
                done = len(rounds(fed, job_id))
                with fed.session() as s:
                    if s.get_job(job_id)["status"] != "RUNNING" and done:
                        break  # ended before all kills were spent
                fed.kill_server()
                kills += 1
                restarted = time.monotonic()
                fed.start_server(same_ports=True)
                try:
                    wait_until(lambda: len(rounds(fed, job_id)) > done or
                               len(rounds(fed, job_id)) == args.rounds, 120, "the next round")
                except AssertionError:
                    print(f"kill {kills}: no round recorded within 120 s of the restart")
                    print(fed.server_output()[-3000:])
                    return 1
                resumes.append(time.monotonic() - restarted)
                print(f"kill {kills:3d} after round {done:3d}: next round recorded "
                      f"{resumes[-1]:.2f} s after the restart", flush=True)
            with fed.session() as s:
                final = s.wait_for_job(job_id, timeout=600)
            recorded = rounds(fed, job_id)
            model_file = fed.ws / "jobs" / job_id / "result" / "global_model.npz"
            with np.load(model_file, allow_pickle=False) as d:
                weights = d["weights"]
            took = time.monotonic() - t0
    want = START + args.rounds * (args.sites + 1) / 2
    exact = bool(np.allclose(weights, want, rtol=0, atol=1e-9))
    numbers = [r["round"] for r in recorded]
    each_once = numbers == list(range(args.rounds))
    if not each_once:
        missing = sorted(set(range(args.rounds)) - set(numbers))
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        print(f"rounds recorded: {len(numbers)}; missing {missing[:20]}; twice {twice[:20]}; "
              f"out of order: {numbers != sorted(numbers)}")
    print(f"\n{kills} SIGKILLs of the server over {took:.0f} s, {args.sites} flshell client sites, "
          f"{args.rounds} rounds")
    print(f"job: {final['status']}; rounds recorded exactly once each: {each_once}; "
          f"model exact (start + {args.rounds} x mean k): {exact}")
    if resumes:
        print(f"restart -> next round: median {statistics.median(resumes):.2f} s, "
              f"max {max(resumes):.2f} s")
    ok = final["status"] == "COMPLETED" and each_once and exact
    print("all recovered" if ok else "NOT all recovered")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
