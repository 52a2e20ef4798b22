"""A job's folder on the server: status, per-round records, metrics.jsonl, the global model."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from runtime.model import FLModel, ParamsType
from runtime.wire.npz import load_params_npz, save_params_npz


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` so a crash leaves either the old file or the new one, never half of each."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JobWorkspace:
    """`<server workspace>/jobs/<job id>/` and what is written in it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.result_dir = self.root / "result"
        self.rounds_dir = self.root / "rounds"
        self.logs_dir = self.root / "logs"
        for d in (self.root, self.result_dir, self.rounds_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.metrics_file = self.root / "metrics.jsonl"
        self.status_file = self.root / "status.json"
        self._lock = threading.Lock()

    def copy_job_folder(self, src: Path) -> None:
        dest = self.root / "job"
        if not dest.exists():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))

    def write_status(self, status: dict[str, Any]) -> None:
        atomic_write_text(self.status_file, json.dumps(status, indent=2, default=str))

    def record_round(self, record: dict[str, Any]) -> None:
        """Persist one finished round before it is reported done."""
        r = record["round"]
        atomic_write_text(
            self.rounds_dir / f"round_{r:05d}.json", json.dumps(record, indent=2, default=str)
        )
        with self._lock, open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"ts": time.time(), **record}, default=str) + "\n")
            f.flush()

    def save_model(self, model: FLModel, name: str = "global_model") -> Path:
        path = self.result_dir / f"{name}.npz"
        if model.params is not None:
            save_params_npz(path, model.params)
            if any(type(v).__module__.startswith("torch") for v in model.params.values()):
                import torch  # a torch model is also kept as a state_dict, exact in every dtype

                tmp = path.with_name(f".{name}.tmp{os.getpid()}.pt")
                torch.save(dict(model.params), tmp)
                os.replace(tmp, self.result_dir / f"{name}.pt")
        info = {
            "params_type": str(model.params_type) if model.params_type else None,
            "current_round": model.current_round,
            "total_rounds": model.total_rounds,
            "metrics": model.metrics,
            "meta": model.meta,
            "saved_at": time.time(),
        }
        atomic_write_text(self.result_dir / f"{name}.json", json.dumps(info, indent=2, default=str))
        return path

    def save_json(self, name: str, data: Any) -> Path:
        """`result/<name>` (a workflow's result: the cross-site matrix, an evaluation)."""
        path = self.result_dir / name
        atomic_write_text(path, json.dumps(data, indent=2, default=str))
        return path

    def load_model(self, name: str = "global_model") -> FLModel | None:
        """A model `save_model` kept (a torch one as tensors), or None if there is none."""
        return load_saved_model(self.result_dir, name)


def load_saved_model(folder: Path, name: str) -> FLModel | None:
    """The model `JobWorkspace.save_model` wrote as `folder/name.*` (or linked there), or None."""
    info_file = folder / f"{name}.json"
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text(encoding="utf-8"))
    pt, npz = folder / f"{name}.pt", folder / f"{name}.npz"
    if pt.is_file():
        import torch  # the server wrote it; weights_only refuses anything but tensors

        params = dict(torch.load(pt, map_location="cpu", weights_only=True))
    elif npz.is_file():
        params = load_params_npz(npz)
    else:
        return None
    return FLModel(params=params, params_type=ParamsType.FULL, metrics=info.get("metrics") or {},
                   current_round=info.get("current_round"), total_rounds=info.get("total_rounds"),
                   meta=info.get("meta") or {})
