"""Parse and validate config_server.json / config_client.json into ServerConfig / ClientConfig."""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from .errors import JobError, join_path, names, render
from .spec import ClientConfig, ComponentSpec, ExecutorSpec, FilterSpec, ServerConfig
from .variables import check_references

# Short names accepted in `"name": ...` instead of `"path"` (NVFlare style): name -> dotted path.
BUILTIN_NAMES: dict[str, str] = {
    "FedAvg": "runtime.workflows.FedAvg",
    "ScriptExecutor": "runtime.client.executors.ScriptExecutor",
    "NumpyModelPersistor": "runtime.workflows.NumpyModelPersistor",
    "WeightedAggregator": "runtime.workflows.WeightedAggregator",
}

SERVER_FILES = ("config_server.json", "config_fed_server.json")
CLIENT_FILES = ("config_client.json", "config_fed_client.json")
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\Z")
_COMPONENT_KEYS = ("id", "path", "class_path", "name", "args", "disabled")
_SERVER_KEYS = ("format_version", "workflows", "components", "task_data_filters", "task_result_filters")
_CLIENT_KEYS = ("format_version", "executors", "components", "task_data_filters", "task_result_filters")


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_json(root: Path, rel: str) -> Any:
    """Read `root/rel` as JSON; errors say where (line and column) and what is wrong."""
    try:
        text = (root / rel).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise JobError(rel, None, f"expected UTF-8 text, found byte 0x{e.object[e.start]:02x} at offset {e.start}")
    except OSError as e:
        raise JobError(rel, None, f"cannot read file: {e.strerror or e}")
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise JobError(rel, None, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
    except RecursionError:
        raise JobError(rel, None, "invalid JSON: arrays or objects nest too deeply") from None
    except _DuplicateKey as e:
        raise JobError(rel, None, f'invalid JSON: key "{e.args[0]}" appears twice in the same object')


class _File:
    """Parsing state of one config file: its path relative to the job root and the ids seen."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.ids: dict[str, str] = {}

    def err(self, json_path: str | None, message: str) -> JobError:
        return JobError(self.rel, json_path, message)

    def component(self, raw: Any, path: str, id_required: bool) -> ComponentSpec | None:
        if not isinstance(raw, dict):
            raise self.err(path, f'expected a component object {{"path": "module.Class", "args": {{...}}}}, '
                                 f"got {render(raw)}")
        for key in raw:
            if key not in _COMPONENT_KEYS:
                close = difflib.get_close_matches(key, _COMPONENT_KEYS, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise self.err(join_path(path, key), f"unknown key ({hint}expected: {names(_COMPONENT_KEYS)})")
        disabled = raw.get("disabled", False)
        if not isinstance(disabled, bool):
            raise self.err(join_path(path, "disabled"), f"expected true or false, got {render(disabled)}")
        cid = raw.get("id")
        if cid is None and id_required:
            raise self.err(path, 'missing "id" (components are referenced by their id)')
        if cid is not None and (not isinstance(cid, str) or not cid.strip()):
            raise self.err(join_path(path, "id"), f"expected a non-empty string, got {render(cid)}")
        dotted = self._path(raw, path)
        args = raw.get("args", {})
        if not isinstance(args, dict):
            raise self.err(join_path(path, "args"), f"expected an object, got {render(args)}")
        if disabled:
            return None
        if cid is not None:
            if cid in self.ids:
                raise self.err(join_path(path, "id"), f'duplicate id "{cid}" (first used at {self.ids[cid]})')
            self.ids[cid] = path
        return ComponentSpec(cid, dotted, args, f"{self.rel}: {path}", self.rel, path)

    def _path(self, raw: dict, path: str) -> str:
        for key in ("path", "class_path"):
            if key in raw:
                value = raw[key]
                if not isinstance(value, str) or not DOTTED.match(value):
                    raise self.err(join_path(path, key), 'expected a dotted path like "package.module.ClassName", '
                                                         f"got {render(value)}")
                return value
        if "name" in raw:
            value = raw["name"]
            if isinstance(value, str) and value in BUILTIN_NAMES:
                return BUILTIN_NAMES[value]
            raise self.err(join_path(path, "name"), f"unknown built-in name {render(value)} "
                           f'(known: {names(sorted(BUILTIN_NAMES))}); give "path": "package.module.ClassName"')
        raise self.err(path, 'missing "path" (expected "path": "package.module.ClassName")')

    def tasks(self, raw: Any, path: str) -> list[str]:
        if (not isinstance(raw, list) or not raw
                or not all(isinstance(t, str) and t.strip() for t in raw)):
            raise self.err(path, f"expected a non-empty list of task names, got {render(raw)}")
        return list(raw)

    def entry(self, raw: Any, path: str, keys: tuple[str, ...]) -> dict:
        if not isinstance(raw, dict):
            raise self.err(path, f"expected an object with keys {names(keys)}, got {render(raw)}")
        for key in keys:
            if key not in raw:
                raise self.err(path, f'missing "{key}" (expected keys: {names(keys)})')
        for key in raw:
            if key not in keys:
                raise self.err(join_path(path, key), f"unknown key (expected: {names(keys)})")
        return raw

    def component_list(self, data: dict, key: str, id_required: bool, required: bool) -> list[ComponentSpec]:
        raw = data.get(key, [])
        if not isinstance(raw, list) or (required and not raw):
            what = "a non-empty list" if required else "a list"
            raise self.err(key, f"expected {what} of components, got {render(raw)}")
        specs = [self.component(item, join_path(key, i), id_required) for i, item in enumerate(raw)]
        return [s for s in specs if s is not None]

    def filters(self, data: dict, key: str) -> list[FilterSpec]:
        raw = data.get(key, [])
        if not isinstance(raw, list):
            raise self.err(key, f'expected a list of {{"tasks": [...], "filters": [...]}}, got {render(raw)}')
        out = []
        for i, item in enumerate(raw):
            path = join_path(key, i)
            item = self.entry(item, path, ("tasks", "filters"))
            tasks = self.tasks(item["tasks"], join_path(path, "tasks"))
            raw_filters = item["filters"]
            if not isinstance(raw_filters, list) or not raw_filters:
                raise self.err(join_path(path, "filters"),
                               f"expected a non-empty list of components, got {render(raw_filters)}")
            flist = [self.component(f, join_path(join_path(path, "filters"), j), False)
                     for j, f in enumerate(raw_filters)]
            out.append(FilterSpec(tasks, [f for f in flist if f is not None], f"{self.rel}: {path}"))
        return out


def _top_level(f: _File, data: Any, reserved: tuple[str, ...], other_side: tuple[str, str]) -> tuple[int, dict]:
    if not isinstance(data, dict):
        raise f.err(None, f"expected a JSON object at the top level, got {render(data)}")
    version = data.get("format_version", 2)
    if version not in (1, 2) or isinstance(version, bool):
        raise f.err("format_version", f"expected 2 (or 1), got {render(version)}")
    wrong_key, right_file = other_side
    if wrong_key in data:
        raise f.err(wrong_key, f"belongs in {right_file}, not in this file")
    variables = {}
    for key, value in data.items():
        if key in reserved:
            continue
        close = difflib.get_close_matches(key, reserved, n=1, cutoff=0.8)
        if close and isinstance(value, list):
            raise f.err(key, f'unknown key (did you mean "{close[0]}"?)')
        variables[key] = value
    return version, variables


def _check_variables(specs: list[ComponentSpec], variables: dict) -> None:
    for spec in specs:
        check_references(spec.args, variables, spec.file, join_path(spec.json_path, "args"))


def parse_server_config(root: Path, rel: str) -> ServerConfig:
    """Parse `root/rel` (a server config) into a ServerConfig, raising JobError on any violation."""
    f = _File(rel)
    data = read_json(root, rel)
    version, variables = _top_level(f, data, _SERVER_KEYS, ("executors", "config_client.json"))
    if "workflows" not in data:
        raise f.err("workflows", "missing (expected a non-empty list of workflow components)")
    workflows = f.component_list(data, "workflows", False, True)
    components = f.component_list(data, "components", True, False)
    data_filters, result_filters = f.filters(data, "task_data_filters"), f.filters(data, "task_result_filters")
    _check_variables(workflows + components + [c for fl in data_filters + result_filters for c in fl.filters],
                     variables)
    return ServerConfig(workflows, components, variables, root / rel, data_filters, result_filters, version)


def parse_client_config(root: Path, rel: str) -> ClientConfig:
    """Parse `root/rel` (a client config) into a ClientConfig, raising JobError on any violation."""
    f = _File(rel)
    data = read_json(root, rel)
    version, variables = _top_level(f, data, _CLIENT_KEYS, ("workflows", "config_server.json"))
    raw = data.get("executors")
    if raw is None:
        raise f.err("executors", 'missing (expected a non-empty list of {"tasks": [...], "executor": {...}})')
    if not isinstance(raw, list) or not raw:
        raise f.err("executors", f'expected a non-empty list of {{"tasks": [...], "executor": {{...}}}}, '
                                 f"got {render(raw)}")
    executors, owner = [], {}
    for i, item in enumerate(raw):
        path = join_path("executors", i)
        item = f.entry(item, path, ("tasks", "executor"))
        tasks = f.tasks(item["tasks"], join_path(path, "tasks"))
        for j, task in enumerate(tasks):
            if task in owner:
                raise f.err(join_path(join_path(path, "tasks"), j),
                            f'task "{task}" is already handled by {owner[task]}')
            owner[task] = path
        spec = f.component(item["executor"], join_path(path, "executor"), False)
        if spec is not None:
            executors.append(ExecutorSpec(tasks, spec, f"{rel}: {path}"))
    components = f.component_list(data, "components", True, False)
    data_filters, result_filters = f.filters(data, "task_data_filters"), f.filters(data, "task_result_filters")
    _check_variables([e.executor for e in executors] + components
                     + [c for fl in data_filters + result_filters for c in fl.filters], variables)
    return ClientConfig(executors, components, data_filters, result_filters, variables, root / rel, version)
