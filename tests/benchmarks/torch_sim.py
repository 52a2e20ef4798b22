"""hello-pt on the simulator: N = 2 and 8 sites, 3 rounds, scripts in-process vs in their own
processes. Prints whole-process wall time and peak RSS (the children's included for external).

Run: python tests/benchmarks/torch_sim.py [--sizes 2,8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import run_measured  # noqa: E402

JOB_PY = Path(__file__).resolve().parents[2] / "examples" / "hello-pt" / "job.py"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2,8")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{'N':>4} {'mode':>9} {'wall s':>8} {'peak RSS MiB (largest process)':>32}")
    for n in (int(x) for x in args.sizes.split(",")):
        for external in (False, True):
            ws = tempfile.mkdtemp(prefix="flshell-torch-bench-")
            cmd = [sys.executable, str(JOB_PY), "--n_clients", str(n), "--num_rounds",
                   str(args.rounds), "--workspace", ws]
            if external:
                cmd.append("--external")
            wall, peak, rc, out = run_measured(cmd)
            shutil.rmtree(ws, ignore_errors=True)
            if rc != 0 or "COMPLETED" not in out:
                print(f"N={n} external={external}: exit {rc}\n{out[-3000:]}")
                return 1
            # ru_maxrss of the grandchildren (external scripts) is folded into RUSAGE_CHILDREN
            mode = "external" if external else "in-proc"
            print(f"{n:>4} {mode:>9} {wall:>8.2f} {peak:>32.0f}")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"(largest single process over all runs: {kids:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
