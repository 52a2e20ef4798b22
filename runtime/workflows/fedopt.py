"""FedOpt: adaptive federated optimization (Reddi et al., "Adaptive Federated Optimization",
ICLR 2021).

Each round the sites' results are averaged as FedAvg does; the server then treats the
pseudo-gradient g = x - avg (the global model minus that average) as the gradient of its own
optimizer and takes one step on x. The update rules are those of torch.optim (SGD with momentum
and Nesterov, Adam, Adagrad) and, for Yogi, Algorithm 2 of the paper; they are written here over
numpy float64 arrays, so a server without torch runs them, and the optimizer's state goes into
the job's checkpoint (a restarted server goes on with the same moments).

    sgd:      b = momentum * b + g  (b = g the first time); d = g + momentum * b (nesterov) or b;
              x = x - lr * d.  With no momentum: x = avg + (1 - lr) * g, so lr = 1 is FedAvg
              exactly.
    adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
              x = x - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    adagrad:  s = s + g^2;  x = x - lr * g / (sqrt(s) + eps)
    yogi:     m = b1 m + (1 - b1) D;  v = v - (1 - b2) D^2 sign(v - D^2);
              x = x + lr * m / (sqrt(v) + eps)   with D = -g = avg - x, v starting at eps^2
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtime.jobs.errors import ArgError
from runtime.model import FLModel, ParamsType
from runtime.workflows.aggregators import apply_diff
from runtime.workflows.arrays import params_like, to_float64
from runtime.workflows.fedavg import FedAvg

OPTIMIZERS = ("sgd", "adam", "adagrad", "yogi")
DEFAULT_EPS = {"sgd": 0.0, "adam": 1e-8, "adagrad": 1e-10, "yogi": 1e-3}


def _number(name: str, value: Any, low: float, high: float | None = None,
            low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        where = f"{'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if high is not None else "")
        raise ArgError(name, f"a number {where}", value)
    return float(value)


class ServerOptimizer:
    """One optimizer's state and step over a dict of float64 arrays (see the module doc)."""

    def __init__(self, optimizer: str = "sgd", lr: float = 1.0, momentum: float = 0.0,
                 nesterov: bool = False, betas: tuple[float, float] | list[float] = (0.9, 0.999),
                 eps: float | None = None) -> None:
        if optimizer not in OPTIMIZERS:
            raise ArgError("optimizer", " | ".join(f'"{o}"' for o in OPTIMIZERS), optimizer)
        self.kind = optimizer
        self.lr = _number("server_lr", lr, 0.0, low_open=True)
        self.momentum = _number("momentum", momentum, 0.0, 1.0)
        if not isinstance(nesterov, bool):
            raise ArgError("nesterov", "true or false", nesterov)
        if nesterov and (optimizer != "sgd" or self.momentum == 0):
            raise ArgError("nesterov", "only with optimizer \"sgd\" and momentum > 0", nesterov)
        self.nesterov = nesterov
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ArgError("betas", "two numbers [b1, b2], each >= 0 and < 1", betas)
        self.betas = (_number("betas[0]", betas[0], 0.0, 1.0), _number("betas[1]", betas[1], 0.0, 1.0))
        self.eps = DEFAULT_EPS[optimizer] if eps is None else _number("eps", eps, 0.0)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}  # slot -> name -> array

    def _slot(self, slot: str, name: str, like: np.ndarray, fill: float = 0.0) -> np.ndarray:
        arrays = self.state.setdefault(slot, {})
        if name not in arrays:
            arrays[name] = np.full(like.shape, fill, dtype=np.float64)
        return arrays[name]

    def step(self, x: dict[str, np.ndarray], avg: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The new global model from the current one `x` and the sites' average `avg` (both
        float64 arrays by name); the pseudo-gradient is g = x - avg."""
        self.step_count += 1
        t = self.step_count
        out = {}
        for name, xv in x.items():
            a = avg[name]
            g = xv - a
            if self.kind == "sgd":
                if self.momentum == 0:
                    out[name] = a + (1.0 - self.lr) * g
                    continue
                b = self.state.get("momentum", {}).get(name)
                b = g.copy() if b is None else self.momentum * b + g
                self.state.setdefault("momentum", {})[name] = b
                d = g + self.momentum * b if self.nesterov else b
                out[name] = xv - self.lr * d
            elif self.kind == "adam":
                b1, b2 = self.betas
                m = self._slot("m", name, xv)
                v = self._slot("v", name, xv)
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps
                out[name] = xv - (self.lr / (1 - b1 ** t)) * m / denom
            elif self.kind == "adagrad":
                s = self._slot("sum", name, xv)
                s += g * g
                out[name] = xv - self.lr * g / (np.sqrt(s) + self.eps)
            else:  # yogi, Reddi et al. Algorithm 2
                b1, b2 = self.betas
                delta = -g
                m = self._slot("m", name, xv)
                v = self._slot("v", name, xv, fill=self.eps ** 2)
                m *= b1
                m += (1 - b1) * delta
                d2 = delta * delta
                v -= (1 - b2) * d2 * np.sign(v - d2)
                out[name] = xv + self.lr * m / (np.sqrt(v) + self.eps)
        return out

    # ---- persistence (the job's checkpoint) ----------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {f"{slot}/{name}": arr for slot, arrays in self.state.items()
                for name, arr in arrays.items()}

    def state_info(self) -> dict[str, Any]:
        return {"optimizer": self.kind, "step": self.step_count}

    def load(self, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        if info.get("optimizer") != self.kind:
            raise ValueError(f"the checkpointed optimizer state is {info.get('optimizer')!r}, "
                             f"this job's optimizer is {self.kind!r}")
        self.step_count = int(info.get("step", 0))
        self.state = {}
        for key, arr in arrays.items():
            slot, _, name = key.partition("/")
            self.state.setdefault(slot, {})[name] = np.array(arr, dtype=np.float64)


class FedOpt(FedAvg):
    """FedAvg's loop with a server optimizer on the pseudo-gradient (see the module doc).

    Args:
        optimizer: "sgd", "adam", "adagrad" or "yogi".
        server_lr: the server's step size.
        momentum, nesterov: SGD's (torch.optim.SGD's meaning).
        betas: Adam's and Yogi's (b1, b2).
        eps: the denominator's epsilon (Reddi et al.'s tau); defaults: Adam 1e-8 and Adagrad
            1e-10 as torch.optim, Yogi 1e-3 as the paper.
        Every FedAvg argument applies (aggregator_id too: the optimizer steps towards whatever
        the aggregator gives, a robust median for instance).
    """

    def __init__(self, optimizer: str = "sgd", server_lr: float = 1.0, momentum: float = 0.0,
                 nesterov: bool = False, betas: list[float] | tuple[float, float] = (0.9, 0.999),
                 eps: float | None = None, **fedavg_args: Any) -> None:
        self.optimizer = ServerOptimizer(optimizer, server_lr, momentum, nesterov, betas, eps)
        super().__init__(**fedavg_args)

    def server_update(self, model: FLModel, agg: FLModel) -> dict[str, Any] | None:
        x = model.params or {}
        if agg.params is None:
            return x
        avg = apply_diff(x, agg.params) if agg.params_type == ParamsType.DIFF else agg.params
        new = self.optimizer.step(to_float64(x), to_float64(avg))
        return params_like(new, x)

    def state_to_keep(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.optimizer.state_arrays(), self.optimizer.state_info()

    def restore_state(self, arrays: dict[str, Any], info: dict[str, Any]) -> None:
        self.optimizer.load(arrays, info)
        self.info(f"FedOpt: {self.optimizer.kind} state restored from the checkpoint "
                  f"(step {self.optimizer.step_count})")
