"""hello-pt: FedAvg over 8 sites with a PyTorch CNN, as a recipe (this folder is also the same
job as a job folder: `flshell sim examples/hello-pt -n 8`).

    python examples/hello-pt/job.py                         # 8 sites, 5 rounds, simulated
    python examples/hello-pt/job.py --export --export-dir /tmp/hello-pt-job
    flshell sim /tmp/hello-pt-job -n 8                      # the same job from its folder
"""

import argparse
import sys
from pathlib import Path

CUSTOM = Path(__file__).resolve().parent / "app" / "custom"  # the sites' code, shared with the job folder
sys.path.insert(0, str(CUSTOM))

from model import SimpleNetwork  # noqa: E402
from runtime import paths  # noqa: E402
from runtime.recipes import FedAvgRecipe, SimEnv, add_experiment_tracking  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_clients", type=int, default=8)
    parser.add_argument("--num_rounds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew")
    parser.add_argument("--samples", type=int, default=512, help="training samples per site")
    parser.add_argument("--data-path", default=None, help="CIFAR-10 binary folder (optional)")
    parser.add_argument("--transfer", choices=["FULL", "DIFF"], default="FULL")
    parser.add_argument("--external", action="store_true", help="each site's script in its own process")
    parser.add_argument("--workspace", default=None, help="runs go to WORKSPACE/<job name> "
                        "(default $FLSHELL_HOME/simulation)")
    parser.add_argument("--export", action="store_true", help="write the job folder instead of running")
    parser.add_argument("--export-dir", default=str(paths.default("jobs", "hello-pt")))
    args = parser.parse_args()

    train_args = f"--alpha {args.alpha} --samples {args.samples}"
    if args.data_path:
        train_args += f" --data-path {args.data_path}"
    recipe = FedAvgRecipe(
        name="hello-pt",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        initial_model=SimpleNetwork(seed=0),
        train_script=str(CUSTOM / "client.py"),
        train_args=train_args,
        params_transfer_type=args.transfer,
        launch_external_process=args.external,
    )
    add_experiment_tracking(recipe, tracking_type="tensorboard")
    if args.export:
        print("job folder written to", recipe.export(args.export_dir))
        return
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace))
    print()
    print("Job Status is:", run.get_status())
    print("Result can be found in :", run.get_result())


if __name__ == "__main__":
    main()
