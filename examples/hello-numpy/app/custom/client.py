"""hello-numpy site script: each site adds its own number to every weight.

site-k adds k * scale, so after one round of FedAvg (equal weights) every weight has grown by
scale * (N + 1) / 2 for N sites: the aggregate is checkable by hand.
"""

import argparse
import re

import numpy as np

import runtime.client as flare


def site_number(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    delta = site_number(site) * args.scale
    print(f"{site}: adding {delta} each round")

    while flare.is_running():
        model = flare.receive()
        weights = np.asarray(model.params["weights"], dtype=np.float64)
        new_weights = weights + delta
        print(f"{site}: round {model.current_round + 1}/{model.total_rounds}")
        flare.send(
            flare.FLModel(
                params={"weights": new_weights},
                metrics={"mean_weight": float(weights.mean())},  # of the model we received
                meta={"NUM_STEPS_CURRENT_ROUND": 1},
            )
        )


if __name__ == "__main__":
    main()
