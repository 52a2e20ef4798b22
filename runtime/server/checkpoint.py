"""Round checkpoints: what a restarted server needs to resume a job after its last completed round.

After each completed round, `write_checkpoint` puts in `<job>/checkpoint/round_NNNNN/` the
round's record and the global model the controller saved for that round (hard links to
`result/global_model.*`: no copy, and the linked files survive the next round's replacement),
then points `<job>/checkpoint/latest` at it with one atomic write. A crash at any point leaves
`latest` naming a complete checkpoint, or the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.model import FLModel, ParamsType
from runtime.server.job_workspace import atomic_write_text
from runtime.wire.npz import load_params_npz

LATEST = "latest"
MODEL_FILES = ("global_model.npz", "global_model.pt", "global_model.json")


@dataclass
class Checkpoint:
    round: int  # 0-based, the last completed round
    workflow: int  # index of the workflow that ran it
    record: dict[str, Any]  # the round's record (as in rounds/round_NNNNN.json)
    folder: Path

    def load_model(self) -> FLModel | None:
        """The global model after `round`, or None if the controller saved none that round."""
        meta_file = self.folder / "global_model.json"
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        pt, npz = self.folder / "global_model.pt", self.folder / "global_model.npz"
        if pt.is_file():
            import torch  # the server wrote it; weights_only refuses anything but tensors

            params = dict(torch.load(pt, map_location="cpu", weights_only=True))
        elif npz.is_file():
            params = load_params_npz(npz)
        else:
            return None
        return FLModel(params=params, params_type=ParamsType.FULL, metrics=meta.get("metrics") or {},
                       current_round=self.round, total_rounds=meta.get("total_rounds"),
                       meta=meta.get("meta") or {})


def write_checkpoint(job_root: Path, record: dict[str, Any], workflow: int) -> Path:
    """Checkpoint the round of `record`; the model is taken from result/ if the controller saved
    it for this very round (its global_model.json says so)."""
    r = int(record["round"])
    base = Path(job_root) / "checkpoint"
    folder = base / f"round_{r:05d}"
    shutil.rmtree(folder, ignore_errors=True)  # a crash half-way through this round's checkpoint
    folder.mkdir(parents=True)
    result = Path(job_root) / "result"
    meta_file = result / "global_model.json"
    try:
        saved_round = json.loads(meta_file.read_text(encoding="utf-8")).get("current_round")
    except (OSError, ValueError):
        saved_round = None
    if saved_round == r:
        for name in MODEL_FILES:
            if (result / name).is_file():
                try:
                    os.link(result / name, folder / name)
                except OSError:  # a filesystem without hard links
                    shutil.copy2(result / name, folder / name)
    atomic_write_text(folder / "record.json", json.dumps(
        {"round": r, "workflow": workflow, "record": record}, default=str))
    atomic_write_text(base / LATEST, folder.name)
    for old in base.glob("round_*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def read_checkpoint(job_root: Path) -> Checkpoint | None:
    """The job's latest complete checkpoint, or None (never checkpointed, or unreadable)."""
    base = Path(job_root) / "checkpoint"
    try:
        folder = base / (base / LATEST).read_text(encoding="utf-8").strip()
        data = json.loads((folder / "record.json").read_text(encoding="utf-8"))
        return Checkpoint(int(data["round"]), int(data.get("workflow", 0)), dict(data["record"]),
                          folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None
