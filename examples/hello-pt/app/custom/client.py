"""hello-pt site script: train SimpleNetwork on this site's (non-IID) data with the Client API."""

import argparse
import re

import torch
from torch import nn

import runtime.client as flare
from runtime.client.tracking import SummaryWriter

from data import site_data, test_data
from model import SimpleNetwork, train_epoch


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=512, help="training samples per site")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew")
    parser.add_argument("--data-path", default=None, help="CIFAR-10 binary folder (optional)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(re.search(r"(\d+)$", site).group(1)) if re.search(r"(\d+)$", site) else 1
    # The site's GPUs (`flshell sim -gpu`, or a job's resource_spec on a real site) are the only
    # ones this process sees (CUDA_VISIBLE_DEVICES): cuda:0 is the first of them.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = flare.system_info().get("gpu")
    print(f"{site}: training on {device}" + (f" (GPU {gpu})" if gpu and device.type == "cuda" else ""))
    # Sites share the process in the simulator: each has its own generator, never the global one.
    shuffle = torch.Generator().manual_seed(args.seed + index)

    x, y = (torch.from_numpy(a) for a in site_data(index, args.samples, args.alpha, args.data_path))
    xt, yt = (torch.from_numpy(a).to(device) for a in test_data(data_path=args.data_path))
    net = SimpleNetwork().to(device)
    writer = SummaryWriter()
    step = 0

    def log_loss(loss: float) -> None:
        nonlocal step
        writer.add_scalar("train_loss", loss, global_step=step)
        step += 1

    while flare.is_running():
        model = flare.receive()
        net.load_state_dict(model.params)
        accuracy = evaluate(net, xt, yt)  # of the global model we received
        optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
        steps = 0
        for _ in range(args.epochs):
            order = torch.randperm(len(y), generator=shuffle)
            steps += train_epoch(net, optimizer, x, y, order, device, log_loss)
        writer.add_scalar("accuracy", accuracy, global_step=model.current_round)
        print(f"{site}: round {model.current_round + 1}: accuracy of received model {accuracy:.3f}")
        flare.send(flare.FLModel(
            params={k: v.cpu() for k, v in net.state_dict().items()},
            metrics={"accuracy": accuracy},
            meta={"NUM_STEPS_CURRENT_ROUND": steps},
        ))


if __name__ == "__main__":
    main()
