"""The site halves of FedProx and SCAFFOLD, so a training loop needs a few lines for each.

FedProx (the server sends `meta["fedprox_mu"]`):

    mu = model.meta.get("fedprox_mu", 0.0)
    loss = criterion(net(x), y) + fedprox_loss(net, global_params, mu)        # torch
    grad = my_grad(w) + fedprox_grad(w, global_params, mu)                    # numpy

SCAFFOLD (the server sends `meta["scaffold_c_global"]`; the site keeps its own c_i across
rounds in a ScaffoldHelper made once, before its loop):

    scaffold = ScaffoldHelper()                       # once
    while flare.is_running():
        model = flare.receive()
        scaffold.start_round(model)                   # takes c from the task
        for step in range(K):
            ... w = w - lr * (grad(w) + scaffold.correction()[name])        # numpy, or:
            ... optimizer.step(); scaffold.correct_torch(net, lr)          # torch, after each step
        meta = scaffold.end_round(new_params, lr, K)  # c_i+ (option II) and what to send
        flare.send(FLModel(params=new_params, meta=meta))

The numpy functions take dicts of arrays; the torch ones a module (its named parameters) and
tensors; torch is imported only by those.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.model import FLModel, MetaKey

MU_KEY = "fedprox_mu"
C_GLOBAL = "scaffold_c_global"
C_DIFF = "scaffold_c_diff"


# ---- FedProx ---------------------------------------------------------------------------------

def fedprox_grad(params: dict[str, Any], global_params: dict[str, Any], mu: float) -> dict[str, np.ndarray]:
    """The proximal term's gradient, mu * (w - w_global), param by param (numpy)."""
    return {k: mu * (np.asarray(v, dtype=np.float64) - np.asarray(global_params[k], dtype=np.float64))
            for k, v in params.items()}


def fedprox_loss(module: Any, global_params: dict[str, Any], mu: float) -> Any:
    """The proximal term (mu / 2) * ||w - w_global||^2 over `module`'s parameters (torch), to add
    to the loss; 0 when mu is 0. `global_params` are the received model's tensors."""
    import torch

    if mu == 0:
        return torch.zeros(())
    total = None
    for name, p in module.named_parameters():
        if name not in global_params:
            continue
        g = torch.as_tensor(global_params[name], dtype=p.dtype, device=p.device).detach()
        term = (p - g).pow(2).sum()
        total = term if total is None else total + term
    return (mu / 2.0) * (total if total is not None else torch.zeros(()))


# ---- SCAFFOLD --------------------------------------------------------------------------------

class ScaffoldHelper:
    """A site's SCAFFOLD state (its control variate c_i, zero at first) and the steps of option
    II of Karimireddy et al. 2020 (see the module doc). Keep one per site for the whole job.

    c_i is kept per round (the one after round r) and written to `path` (default: the file
    `scaffold_c_local.npz` in the job's folder on the site, when the script runs on a site), so
    a site whose job process starts again, or a server that resumes the job from an earlier
    round, finds c_i as it was before the round it is sent: the job ends with the same model as
    one never interrupted."""

    KEEP = 3  # rounds of c_i kept: the newest ones

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else _default_state_file()
        self.c_local: dict[str, np.ndarray] | None = None
        self.c_global: dict[str, np.ndarray] | None = None
        self.global_params: dict[str, np.ndarray] | None = None
        self._like: dict[str, Any] = {}
        self._round: int | None = None
        self._after: dict[int, dict[str, np.ndarray]] = self._load()  # round -> c_i after it

    def start_round(self, model: FLModel) -> None:
        """Take the server's control variate c and the global model x from the received task,
        and this site's c_i as it was before the task's round."""
        c = model.meta.get(C_GLOBAL)
        if not isinstance(c, dict):
            raise ValueError(f'the task has no meta["{C_GLOBAL}"]: is the server running SCAFFOLD?')
        params = model.params or {}
        self._like = dict(params)
        self.global_params = {k: _f64(v) for k, v in params.items()}
        self.c_global = {k: _f64(c[k]) for k in params}
        r = model.current_round
        self._round = r if isinstance(r, int) else (max(self._after) + 1 if self._after else 0)
        before = [k for k in self._after if k < self._round]
        if before:
            self.c_local = {k: v.copy() for k, v in self._after[max(before)].items()}
        else:
            self.c_local = {k: np.zeros_like(v) for k, v in self.global_params.items()}

    def correction(self) -> dict[str, np.ndarray]:
        """c - c_i: add it to every local gradient (numpy), y <- y - lr * (g(y) - c_i + c)."""
        self._check()
        return {k: self.c_global[k] - self.c_local[k] for k in self.c_global}

    def correct_torch(self, module: Any, lr: float) -> None:
        """After each optimizer step of plain SGD with step size `lr`: y <- y - lr * (c - c_i),
        which makes the step the corrected one (torch)."""
        import torch

        self._check()
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in self.c_global:
                    d = self.c_global[name] - self.c_local[name]
                    p.sub_(lr * torch.as_tensor(d, dtype=p.dtype, device=p.device))

    def end_round(self, params: dict[str, Any], lr: float, steps: int) -> dict[str, Any]:
        """After `steps` local steps of size `lr` ended at `params` (y_i): c_i+ = c_i - c +
        (x - y_i) / (steps * lr), kept (and written) for the next round. Returns the meta to
        send: scaffold_c_diff (c_i+ - c_i, shaped like the params) and the steps."""
        self._check()
        if steps < 1 or lr <= 0:
            raise ValueError(f"end_round needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
        diff, new_c = {}, {}
        for k, x in self.global_params.items():
            y = _f64(params[k])
            new_c[k] = self.c_local[k] - self.c_global[k] + (x - y) / (steps * lr)
            diff[k] = new_c[k] - self.c_local[k]
        self.c_local = new_c
        self._after[self._round] = new_c
        for old in sorted(self._after)[:-self.KEEP]:
            del self._after[old]
        self._save()
        return {C_DIFF: {k: _like(v, self._like[k]) for k, v in diff.items()},
                MetaKey.NUM_STEPS_CURRENT_ROUND: steps}

    def _check(self) -> None:
        if self.c_global is None or self.c_local is None:
            raise RuntimeError("ScaffoldHelper: call start_round(model) with the received task first")

    # ---- the site's copy on disk ---------------------------------------------------------------

    def _load(self) -> dict[int, dict[str, np.ndarray]]:
        if self.path is None or not self.path.is_file():
            return {}
        out: dict[int, dict[str, np.ndarray]] = {}
        with np.load(self.path, allow_pickle=False) as data:
            for key in data.files:
                r, _, name = key.partition("/")
                out.setdefault(int(r), {})[name] = np.array(data[key], dtype=np.float64)
        return out

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **{f"{r}/{name}": v for r, c in self._after.items() for name, v in c.items()})
        os.replace(tmp, self.path)


def _default_state_file() -> Path | None:
    """scaffold_c_local.npz in the job's folder on the site, when this runs as a site's script."""
    try:
        from runtime.client.api import system_info

        workspace = system_info().get("workspace")
    except RuntimeError:  # not a site's script (a test, a notebook): kept in memory only
        return None
    return Path(workspace) / "scaffold_c_local.npz" if workspace else None


def _f64(value: Any) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        return value.detach().to("cpu").double().numpy()
    return np.asarray(value, dtype=np.float64)


def _like(value: np.ndarray, like: Any) -> Any:
    """`value` (float64) as the kind of `like`: a tensor of its dtype, or a float64 array (kept
    exact: the server sums c_diff in float64)."""
    if type(like).__module__.startswith("torch"):
        import torch

        return torch.from_numpy(np.ascontiguousarray(value)).to(dtype=like.dtype)
    return value
