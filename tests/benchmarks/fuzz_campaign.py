"""Fuzz campaign: thousands of hostile calls on both ports of a real server, then a job that must
still complete. Prints the status codes seen and every call that got INTERNAL or UNKNOWN.

    python tests/benchmarks/fuzz_campaign.py [--calls 2500] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runtime.admin import Session  # noqa: E402
from tests.integration.conftest import HELLO_NUMPY, grpc_federation  # noqa: E402
from tests.integration.fuzz import Fuzzer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, grpc_federation(Path(tmp)) as fed:
        with Session(fed.address, timeout=30) as s:
            job_id = s.submit_job(HELLO_NUMPY)
            s.wait_for_job(job_id, timeout=120)
        fuzzer = Fuzzer(fed.address, fed.fl.address, seed=args.seed, job_ids=[job_id])
        start = time.monotonic()
        tally = fuzzer.run(args.calls)
        took = time.monotonic() - start
        fuzzer.close()
        for rec in fed.engine.sites.all():
            if rec.name not in ("site-1", "site-2"):
                fed.engine.remove_site(rec.name)
        with Session(fed.address, timeout=30) as s:
            after = s.wait_for_job(s.submit_job(HELLO_NUMPY), timeout=120)["status"]
    print(f"{tally.calls} fuzzed calls in {took:.1f} s (seed {args.seed})")
    for code, n in sorted(tally.codes.items(), key=lambda kv: -kv[1]):
        print(f"  {code:20} {n}")
    print(f"INTERNAL or UNKNOWN: {len(tally.internal)}")
    for line in tally.internal:
        print("  " + line)
    print(f"a job after the fuzzing: {after}")
    return 0 if not tally.internal and after == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
