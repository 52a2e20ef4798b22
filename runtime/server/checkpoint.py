"""Round checkpoints: what a restarted server needs to resume a job after its last completed round.

After each completed round, `write_checkpoint` puts in `<job>/checkpoint/round_NNNNN/` the
round's record, the global model the controller saved for that round and the workflow's own
state if it saved one (SCAFFOLD's control variates, FedOpt's optimizer state), as hard links to
`result/global_model.*` and `result/workflow_state.*` (no copy, and the linked files survive the
next round's replacement),
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

from runtime.model import FLModel
from runtime.server.job_workspace import atomic_write_text, load_saved_model

LATEST = "latest"
MODEL_FILES = ("global_model.npz", "global_model.pt", "global_model.json")
STATE = "workflow_state"  # what a controller keeps besides the model (control variates, ...)
STATE_FILES = (f"{STATE}.npz", f"{STATE}.json")


@dataclass
class Checkpoint:
    round: int  # 0-based, the last completed round
    workflow: int  # index of the workflow that ran it
    record: dict[str, Any]  # the round's record (as in rounds/round_NNNNN.json)
    folder: Path

    def load_state(self) -> FLModel | None:
        """The workflow's own state after `round` (its arrays as params, its scalars in meta),
        or None if the controller saved none that round."""
        return self._load(STATE)

    def load_model(self) -> FLModel | None:
        """The global model after `round`, or None if the controller saved none that round."""
        return self._load("global_model")

    def _load(self, name: str) -> FLModel | None:
        model = load_saved_model(self.folder, name)
        if model is not None:
            model.current_round = self.round
        return model


def write_checkpoint(job_root: Path, record: dict[str, Any], workflow: int) -> Path:
    """Checkpoint the round of `record`; the model is taken from result/ if the controller saved
    it for this very round (its global_model.json says so)."""
    r = int(record["round"])
    base = Path(job_root) / "checkpoint"
    folder = base / f"round_{r:05d}"
    shutil.rmtree(folder, ignore_errors=True)  # a crash half-way through this round's checkpoint
    folder.mkdir(parents=True)
    result = Path(job_root) / "result"
    for stem, files in (("global_model", MODEL_FILES), (STATE, STATE_FILES)):
        try:
            saved = json.loads((result / f"{stem}.json").read_text(encoding="utf-8"))
            saved_round = saved.get("current_round")
        except (OSError, ValueError):
            saved_round = None
        if saved_round != r:
            continue  # not saved for this very round
        for name in files:
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
