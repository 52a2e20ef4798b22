"""hello-lr: federated logistic regression with a Newton-Raphson server step, as a recipe.

    python examples/hello-lr/job.py                          # 4 sites, 5 rounds, simulated
    python examples/hello-lr/job.py --poc --n_clients 2          # on a running POC
    python examples/hello-lr/job.py --export --export-dir /tmp/hello-lr-job
    flshell sim /tmp/hello-lr-job -n 4                       # the same job from its folder
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime import paths  # noqa: E402
from runtime.recipes import EnvError, PocEnv, SimEnv  # noqa: E402
from runtime.recipes.lr import FedAvgLrRecipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_clients", type=int, default=4)
    parser.add_argument("--num_rounds", type=int, default=5)
    parser.add_argument("--num_features", type=int, default=10)
    parser.add_argument("--damping", type=float, default=1.0, help="Newton step size")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic data's seed")
    parser.add_argument("--external", action="store_true", help="each site's script in its own process")
    parser.add_argument("--workspace", default=None, help="runs go to WORKSPACE/<job name> "
                        "(default $FLSHELL_HOME/simulation)")
    parser.add_argument("--poc", nargs="?", const=str(paths.default("poc")), metavar="DIR",
                        help="run on the POC in DIR (flshell poc start) instead of simulating")
    parser.add_argument("--export", action="store_true", help="write the job folder instead of running")
    parser.add_argument("--export-dir", default=str(paths.default("jobs", "hello-lr")))
    args = parser.parse_args()

    recipe = FedAvgLrRecipe(
        name="hello-lr",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        num_features=args.num_features,
        damping=args.damping,
        train_script=str(Path(__file__).resolve().parent / "client.py"),
        train_args=f"--num_features {args.num_features} --seed {args.seed}",
        launch_external_process=args.external,
    )
    if args.export:
        print("job folder written to", recipe.export(args.export_dir))
        return
    env = (PocEnv(poc_workspace=args.poc, num_clients=args.n_clients) if args.poc
           else SimEnv(num_clients=args.n_clients, workspace_root=args.workspace))
    try:
        run = recipe.execute(env)
    except EnvError as e:  # no POC there, or not started: the message says which command to run
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result = Path(run.get_result())
    rounds = result.parent / "metrics.jsonl"
    if rounds.is_file():
        print("round  loss    accuracy  |gradient|   (of the w sent that round, over all sites)")
        for line in rounds.read_text().splitlines():
            r = json.loads(line)
            m = {k: r["metrics"].get(k, float("nan")) for k in ("loss", "accuracy", "gradient_norm")}
            print(f"{r['round'] + 1:>5}  {m['loss']:.4f}  {m['accuracy']:.4f}    {m['gradient_norm']:.3e}")
    print()
    print("Job Status is:", run.get_status())
    print("Result can be found in :", result)
    model = result / "global_model.npz"
    if model.is_file():
        with np.load(model, allow_pickle=False) as saved:
            print("Coefficients (intercept first):", np.array2string(saved["w"], precision=4))


if __name__ == "__main__":
    main()
