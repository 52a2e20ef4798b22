"""SimpleNetwork: a small CNN for 3-channel images (CIFAR-10 sized or the synthetic 16x16 ones),
and the epoch of training every site runs (also timed alone by tests/benchmarks/gpu_overhead.py)."""

from typing import Callable

import torch
from torch import nn


class SimpleNetwork(nn.Module):
    """With `seed`, the initial weights come from that seed (the global RNG is left as it was),
    so a job folder's config and job.py start from the same model."""

    def __init__(self, num_classes: int = 10, seed: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            )
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(),
                                            nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                order: torch.Tensor, device: torch.device, on_loss: Callable[[float], None],
                batch_size: int = 32) -> int:
    """One pass over (x, y) in `order`, in batches moved to `device`; `on_loss(loss)` after each
    step. Returns the number of steps."""
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    steps = 0
    for i in range(0, len(y), batch_size):
        batch = order[i : i + batch_size]
        optimizer.zero_grad()
        loss = loss_fn(net(x[batch].to(device)), y[batch].to(device))
        loss.backward()
        optimizer.step()
        on_loss(float(loss.detach()))
        steps += 1
    return steps
