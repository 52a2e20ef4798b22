"""hello-numpy-long site script: each round, train the received MLP with minibatch SGD on this
site's own data for about --seconds (whole steps, at least one), then send it back.

A round takes about --seconds whatever the machine, so the default 60 rounds last a couple of
minutes: long enough to watch, attach to and abort. FedAvg weighs each site by the steps it
made (NUM_STEPS_CURRENT_ROUND)."""

import argparse
import re
import time

import numpy as np

import runtime.client as flare

from mlp import accuracy, sgd_step, site_data, test_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.5, help="training time per round")
    parser.add_argument("--samples", type=int, default=20000, help="training samples per site")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    m = re.search(r"(\d+)$", site)
    index = int(m.group(1)) if m else 1
    x, y = site_data(index, args.samples)
    x_test, y_test = test_data()
    rng = np.random.default_rng(index)  # this site's own generator: sites share the process
    print(f"{site}: {len(y)} samples, {args.seconds:g}s of SGD per round")

    while flare.is_running():
        model = flare.receive()
        params = {k: np.array(v, dtype=np.float32) for k, v in model.params.items()}
        received_acc = accuracy(params, x_test, y_test)  # of the global model we received
        steps, losses = 0, []
        deadline = time.monotonic() + args.seconds
        while steps == 0 or time.monotonic() < deadline:
            batch = rng.integers(0, len(y), size=args.batch)
            losses.append(sgd_step(params, x[batch], y[batch], args.lr))
            steps += 1
        loss = float(np.mean(losses[-50:]))
        print(f"{site}: round {model.current_round + 1}/{model.total_rounds}: {steps} steps, "
              f"loss {loss:.4f}, global model accuracy {received_acc:.3f}")
        flare.send(flare.FLModel(
            params=params,
            metrics={"accuracy": received_acc, "train_loss": loss},
            meta={"NUM_STEPS_CURRENT_ROUND": steps},
        ))


if __name__ == "__main__":
    main()
