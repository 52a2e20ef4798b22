"""Build component instances from specs: import the path, check args, resolve ids and inline components."""
from __future__ import annotations

from typing import Any

from .argcheck import check_call, import_object
from .configs import DOTTED
from .custom_import import custom_imports
from .errors import ArgError, JobError, join_path, names, render
from .spec import App, ClientConfig, ComponentSpec, ServerConfig
from .variables import VAR_REF, substitute

# Args ending in "_id" name a component in the same file, except these common non-reference names.
NOT_COMPONENT_REFS: set[str] = {"job_id", "site_id", "client_id", "task_id", "run_id", "round_id",
                                "device_id", "gpu_id", "session_id", "experiment_id", "project_id", "user_id"}
_INLINE_KEYS = {"path", "class_path", "args", "id"}


def is_inline_component(value: Any) -> bool:
    """A dict like `{"path": "pkg.mod.ClassName", "args": {...}}` (class name capitalised, as in NVFlare)."""
    if not isinstance(value, dict) or not set(value) <= _INLINE_KEYS:
        return False
    path = value.get("path", value.get("class_path"))
    return isinstance(path, str) and bool(DOTTED.match(path)) and path.rpartition(".")[2][:1].isupper()


def _spec_ids(config: ServerConfig | ClientConfig) -> list[ComponentSpec]:
    specs = list(config.components)
    specs += config.workflows if isinstance(config, ServerConfig) else [e.executor for e in config.executors]
    for group in (config.task_data_filters, config.task_result_filters):
        specs += [f for fs in group for f in fs.filters]
    return specs


class ComponentBuilder:
    """Builds the components of one config file of one app (server or client side)."""

    def __init__(self, app: App, config: ServerConfig | ClientConfig, variables: dict[str, Any] | None = None,
                 import_key: str | None = None) -> None:
        self.app = app
        self.config = config
        self.variables: dict[str, Any] = {"APP_DIR": str(app.root), **config.variables, **(variables or {})}
        self.import_key = import_key
        all_specs = _spec_ids(config)
        self.known_ids = [s.id for s in all_specs if s.id]
        self._specs = {c.id: c for c in config.components if c.id}
        self._file = next((s.file for s in all_specs if s.file), config.file.name)
        self._instances: dict[str, Any] = {}
        self._building: list[str] = []

    def build_components(self) -> dict[str, Any]:
        """Build every entry of `components`, in order; return id -> instance."""
        for spec in self.config.components:
            if spec.id not in self._instances:
                self.build(spec)
        return {c.id: self._instances[c.id] for c in self.config.components if c.id}

    def build(self, spec: ComponentSpec) -> Any:
        """Build one component (a workflow, executor, filter or entry of `components`)."""
        if spec.id and spec.id in self._building:
            cycle = " -> ".join([*self._building, spec.id])
            raise JobError(spec.file, spec.json_path, f"circular component references: {cycle}")
        if spec.id:
            self._building.append(spec.id)
        try:
            with custom_imports(self.app, self.import_key):
                obj = self._build(spec.path, spec.args, spec.file, spec.json_path)
        finally:
            if spec.id:
                self._building.remove(spec.id)
        if spec.id:
            self._instances[spec.id] = obj
        return obj

    def get(self, component_id: str) -> Any:
        """The instance of component `component_id` (built on first use)."""
        if component_id in self._instances:
            return self._instances[component_id]
        if component_id in self._specs:
            return self.build(self._specs[component_id])
        raise JobError(self._file, None, f'no component with id "{component_id}" '
                                         f"(known: {names(self.known_ids)})")

    def _build(self, path: str, raw_args: dict[str, Any], file: str | None, json_path: str | None) -> Any:
        args_path = join_path(json_path, "args")
        args = substitute(raw_args, self.variables, file, args_path)
        target = import_object(path, file, json_path)
        if not callable(target):
            raise JobError(file, join_path(json_path, "path"),
                           f'"{path}" is not a class or function (got {type(target).__name__})')
        inline = {k for k, v in args.items() if is_inline_component(v)}
        check_call(target, args, file, json_path, skip_types=inline)
        for name, value in args.items():
            self._check_ref(name, value, raw_args.get(name), file, join_path(args_path, name))
        args = {k: self._inline(v, file, join_path(args_path, k)) for k, v in args.items()}
        try:
            return target(**args)
        except JobError:
            raise
        except ArgError as e:
            raise JobError(file, join_path(args_path, e.arg), f"expected {e.expected}, got {render(e.got)}") from e
        except Exception as e:
            raise JobError(file, json_path, f'"{path}" failed to initialise: {type(e).__name__}: {e}') from e

    def _check_ref(self, name: str, value: Any, raw: Any, file: str | None, at: str) -> None:
        if name in NOT_COMPONENT_REFS or (isinstance(raw, str) and VAR_REF.search(raw)):
            return
        if name.endswith("_id") and isinstance(value, str) and value:
            refs = [(at, value)]
        elif name.endswith("_ids") and isinstance(value, list):
            refs = [(join_path(at, i), v) for i, v in enumerate(value) if isinstance(v, str) and v]
        else:
            return
        for where, ref in refs:
            if ref not in self.known_ids:
                raise JobError(file, where, f'no component with id "{ref}" (known: {names(self.known_ids)})')

    def _inline(self, value: Any, file: str | None, at: str) -> Any:
        if is_inline_component(value):
            args = value.get("args", {})
            if not isinstance(args, dict):
                raise JobError(file, join_path(at, "args"), f"expected an object, got {render(args)}")
            return self._build(value.get("path", value.get("class_path")), args, file, at)
        if isinstance(value, dict):
            return {k: self._inline(v, file, join_path(at, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._inline(v, file, join_path(at, i)) for i, v in enumerate(value)]
        return value
