"""Recipe: a job described in Python. export() writes its job folder; execute(env) runs it."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.jobs.errors import ArgError, check_positive_int

if TYPE_CHECKING:
    from runtime.recipes.envs import Env, Run

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def component(path: str, args: dict[str, Any] | None = None, id: str | None = None) -> dict:
    """A `{"id", "path", "args"}` entry for a config file."""
    entry: dict[str, Any] = {"path": path, "args": dict(args or {})}
    if id is not None:
        entry = {"id": id, **entry}
    return entry


class Recipe:
    """The parts of a job folder, filled in by subclasses; a recipe and the job folder it
    exports run the same way (`flshell sim DIR -n 8` gives the result `execute` gives)."""

    def __init__(self, name: str, min_clients: int = 1) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ArgError("name", "a job name of letters, digits, _ . -", name)
        check_positive_int("min_clients", min_clients)
        self.name = name
        self.min_clients = min_clients
        self.workflows: list[dict] = []
        self.server_components: list[dict] = []
        self.executors: list[dict] = []
        self.client_components: list[dict] = []
        self.task_data_filters: list[dict] = []
        self.task_result_filters: list[dict] = []
        self.custom_files: dict[str, Path | bytes] = {}  # name in custom/ -> source file or data
        self.meta: dict[str, Any] = {}

    # ---- building ----------------------------------------------------------------------------

    def add_custom_file(self, source: str | Path, name: str | None = None) -> str:
        """Ship a file in the job's custom/ folder; returns its name there."""
        src = Path(source)
        if not src.is_file():
            raise FileNotFoundError(f"{self.name}: no file {src} to put in custom/")
        dest = name or src.name
        self.custom_files[dest] = src.resolve()
        return dest

    def add_custom_data(self, name: str, data: bytes) -> str:
        self.custom_files[name] = data
        return name

    def add_script(self, script: str | Path) -> str:
        """Ship a training script and the .py files beside it (its model, data helpers...)."""
        path = Path(script)
        if not path.is_absolute() and not path.is_file():
            caller = _caller_dir()
            if caller is not None and (caller / path).is_file():
                path = caller / path
        if not path.is_file():
            raise ArgError("train_script", "the path of an existing script", str(script))
        for sibling in sorted(path.parent.glob("*.py")):
            if sibling.name != "job.py" and sibling.resolve() != path.resolve():
                self.custom_files.setdefault(sibling.name, sibling.resolve())
        return self.add_custom_file(path)

    # ---- the job folder ----------------------------------------------------------------------

    def export(self, job_dir: str | Path) -> Path:
        """Write the job folder (replacing one a previous export left there)."""
        root = Path(job_dir)
        if root.exists():
            if not (root / "meta.json").is_file():
                raise FileExistsError(f"{root} exists and is not a job folder: not overwriting it")
            shutil.rmtree(root)
        config, custom = root / "app" / "config", root / "app" / "custom"
        config.mkdir(parents=True)
        custom.mkdir()
        meta = {"name": self.name, "deploy_map": {"app": ["server", "@ALL"]},
                "min_clients": self.min_clients, **self.meta}
        _write_json(root / "meta.json", meta)
        _write_json(config / "config_server.json", {
            "format_version": 2, "workflows": self.workflows, "components": self.server_components,
        })
        _write_json(config / "config_client.json", {
            "format_version": 2, "executors": self.executors,
            "components": self.client_components,
            "task_data_filters": self.task_data_filters,
            "task_result_filters": self.task_result_filters,
        })
        for name, src in self.custom_files.items():
            dest = custom / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dest.write_bytes(src)
            else:
                shutil.copyfile(src, dest)
        return root

    def execute(self, env: "Env") -> "Run":
        """Export the job and run it in `env` (SimEnv, PocEnv; ProdEnv with the security issue)."""
        return env.deploy(self)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _caller_dir() -> Path | None:
    """The folder of the user's file that built the recipe (for paths relative to job.py)."""
    here = Path(__file__).resolve().parent
    for frame in inspect.stack()[1:]:
        f = Path(frame.filename).resolve()
        if here not in f.parents and f.parent != here and f.suffix == ".py":
            return f.parent
    return None
