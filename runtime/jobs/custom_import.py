"""Per-job import isolation for custom/ code: same-named modules of concurrent jobs never collide."""
from __future__ import annotations

import contextvars
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import threading
import types
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

PRIVATE_PREFIX = "_flshell_custom_"
_bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("flshell_job_import_key", default=None)
_lock = threading.RLock()
_dirs: dict[str, Path] = {}   # key -> custom dir
_pkgs: dict[str, str] = {}    # key -> private package name
_keys: dict[str, str] = {}    # private package name -> key
_proxies: set[str] = set()    # names this module put in sys.modules as proxies
_given: dict[str, str] = {}   # key -> the custom dir as it was given (for the fast path)
_app_keys: dict[str, str] = {}  # custom dir as given -> its resolved path
_SUFFIXES = tuple(importlib.machinery.SOURCE_SUFFIXES + importlib.machinery.EXTENSION_SUFFIXES)
_LOCAL = frozenset({"__name__", "__loader__", "__package__", "__path__", "__spec__", "__class__"})


def _frame_key() -> str | None:
    """The job whose custom code is running the import or attribute access, if any."""
    frame = sys._getframe(1)
    for _ in range(40):
        if frame is None:
            return None
        name = frame.f_globals.get("__name__", "")
        if name == __name__ or name.startswith(("importlib", "_frozen_importlib")):
            frame = frame.f_back
            continue
        return _keys.get(name.partition(".")[0]) if name.startswith(PRIVATE_PREFIX) else None
    return None


def current_job_key() -> str | None:
    """The importing job: the job whose custom code runs, else the thread's bound job, else the only job."""
    key = _frame_key() or _bound.get()
    if key is None and len(_dirs) == 1:
        key = next(iter(_dirs))
    return key


@contextmanager
def job_import_context(key: str) -> Iterator[None]:
    """Resolve custom/ imports of this thread (and asyncio task) against job `key` inside the block."""
    token = _bound.set(key)
    try:
        yield
    finally:
        _bound.reset(token)


def bind_thread(key: str | None) -> None:
    """Bind the calling thread to job `key` for good (call it first thing in threads the runtime starts)."""
    _bound.set(key)


def unbind_thread() -> None:
    """Remove the calling thread's binding."""
    bind_thread(None)


def _is_package(folder: Path) -> bool:
    if folder.name == "__pycache__" or not folder.is_dir():
        return False
    if (folder / "__init__.py").is_file():
        return True
    try:  # namespace package: a folder holding Python files
        return any(p.suffix == ".py" for p in folder.iterdir())
    except OSError:
        return False


def _provides(custom_dir: Path, dotted: str) -> bool:
    """Whether `custom_dir` holds module or package `dotted` (a .py file, extension or package folder)."""
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        return False
    for i in range(1, len(parts)):
        if not _is_package(custom_dir.joinpath(*parts[:i])):
            return False
    base, last = custom_dir.joinpath(*parts[:-1]), parts[-1]
    return any((base / (last + s)).is_file() for s in _SUFFIXES) or _is_package(base / last)


def _ensure_package(key: str) -> None:
    pkg = _pkgs[key]
    if pkg not in sys.modules:
        spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
        spec.submodule_search_locations = [str(_dirs[key])]
        sys.modules[pkg] = importlib.util.module_from_spec(spec)


def register_custom_dir(key: str, custom_dir: str | Path) -> None:
    """Make `custom_dir` importable by job `key` only (idempotent for the same key and folder)."""
    if key in _dirs and _given.get(key) == str(custom_dir):
        return  # fast path: resolving the folder costs several syscalls per call
    path = Path(custom_dir).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f'custom folder "{custom_dir}" does not exist')
    with _lock:
        _given[key] = str(custom_dir)
        if key in _dirs:
            if _dirs[key] != path:
                raise ValueError(f'import key "{key}" is already registered for {_dirs[key]}; unregister it first')
            return
        clean, digest = re.sub(r"\W", "_", key)[-40:], hashlib.sha1(key.encode()).hexdigest()[:8]
        _dirs[key], _pkgs[key] = path, f"{PRIVATE_PREFIX}{clean}_{digest}"
        _keys[_pkgs[key]] = key
        _ensure_package(key)
        install()
    importlib.invalidate_caches()
    for entry in sorted(path.iterdir()):
        name = entry.name.split(".")[0] if entry.is_file() else entry.name
        existing = sys.modules.get(name)
        if (existing is not None and not isinstance(existing, _CustomProxy) and _provides(path, name)
                and not _same_source(existing, entry)):
            warnings.warn(f'custom/{entry.name} of job "{key}" is hidden by the already imported module "{name}" '
                          f"({getattr(existing, '__file__', 'built-in')}); rename it", stacklevel=2)


def _same_source(module: types.ModuleType, entry: Path) -> bool:
    """Whether an already imported module is this very file (e.g. a recipe's own model.py)."""
    file = getattr(module, "__file__", None)
    if not file or not entry.is_file():
        return False
    try:
        return Path(file).read_bytes() == entry.read_bytes()
    except OSError:
        return False


def unregister(key: str) -> None:
    """Forget job `key`: drop its private modules and the proxies no other job provides."""
    with _lock:
        path = _dirs.pop(key, None)
        _given.pop(key, None)
        if path is None:
            return
        pkg = _pkgs.pop(key)
        _keys.pop(pkg, None)
        for name in [n for n in list(sys.modules) if n == pkg or n.startswith(pkg + ".")]:
            sys.modules.pop(name, None)
        for name in list(_proxies):
            if not any(_provides(d, name) for d in _dirs.values()):
                if isinstance(sys.modules.get(name), _CustomProxy):
                    sys.modules.pop(name, None)
                _proxies.discard(name)
        sys.path_importer_cache.pop(str(path), None)


def registered() -> dict[str, Path]:
    """Registered jobs: key -> custom dir."""
    with _lock:
        return dict(_dirs)


def _real_module(name: str) -> tuple[str, types.ModuleType]:
    key = current_job_key()
    if key is None:
        jobs = ", ".join(sorted(k for k, d in _dirs.items() if _provides(d, name))) or "none registered"
        raise ModuleNotFoundError(f'module "{name}" is custom code of a job ({jobs}) and this thread is bound to '
                                  "no job: run it inside job_import_context(key) or call bind_thread(key)", name=name)
    pkg, path = _pkgs.get(key), _dirs.get(key)
    if pkg is None or path is None:
        raise ModuleNotFoundError(f'module "{name}": this thread is bound to job "{key}", which is not registered '
                                  "(or was unregistered)", name=name)
    mod = sys.modules.get(f"{pkg}.{name}")
    if mod is not None and getattr(getattr(mod, "__spec__", None), "_initializing", False):
        # another thread of this job runs the module's body now: wait for it (the import
        # machinery takes the module's lock) instead of handing out a half-made module
        mod = importlib.import_module(f"{pkg}.{name}")
    elif mod is None:
        if not _provides(path, name):
            raise ModuleNotFoundError(f'no module named "{name}" in the custom/ folder of job "{key}" '
                                      f"({path})", name=name)
        _ensure_package(key)
        mod = importlib.import_module(f"{pkg}.{name}")
    return key, mod


def _peek(name: str) -> types.ModuleType | None:
    key = current_job_key()
    pkg = _pkgs.get(key) if key else None
    return sys.modules.get(f"{pkg}.{name}") if pkg else None


def _touch(name: str) -> None:
    """Run the current job's module on `import name` even when the proxy already exists."""
    try:
        if _peek(name) is None:
            _real_module(name)
    except Exception:  # the C import path would swallow it; it is raised again at first attribute use
        pass


class _CustomProxy(types.ModuleType):
    """sys.modules entry for a custom/ module name; attribute access goes to the current job's module."""

    _flshell_name = ""
    _flshell_ready = False

    def __getattribute__(self, attr: str) -> Any:
        if attr in _LOCAL or attr.startswith("_flshell_"):
            if attr == "__spec__" and super().__getattribute__("_flshell_ready"):
                _touch(super().__getattribute__("_flshell_name"))
            return super().__getattribute__(attr)
        name = super().__getattribute__("_flshell_name")
        if attr.startswith("__") and attr.endswith("__"):
            real = _peek(name)
            if real is not None and hasattr(real, attr):
                return getattr(real, attr)
            return super().__getattribute__(attr)
        key, real = _real_module(name)
        try:
            return getattr(real, attr)
        except AttributeError:
            if hasattr(real, "__path__") and _provides(_dirs[key], f"{name}.{attr}"):
                return importlib.import_module(f"{real.__name__}.{attr}")
            raise AttributeError(f"module '{name}' (custom code of job '{key}') has no attribute '{attr}'",
                                 name=attr, obj=self) from None

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr.startswith("__") or attr.startswith("_flshell_") or isinstance(value, _CustomProxy):
            super().__setattr__(attr, value)  # import machinery bookkeeping stays on the proxy
        else:
            setattr(_real_module(super().__getattribute__("_flshell_name"))[1], attr, value)

    def __delattr__(self, attr: str) -> None:
        if attr.startswith("__") or attr.startswith("_flshell_"):
            super().__delattr__(attr)
        else:
            delattr(_real_module(super().__getattribute__("_flshell_name"))[1], attr)

    def __dir__(self) -> list[str]:
        try:
            return dir(_real_module(super().__getattribute__("_flshell_name"))[1])
        except ImportError:
            return super().__dir__()


class _ProxyLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        proxy = _CustomProxy(spec.name)
        proxy._flshell_name = spec.name
        return proxy

    def exec_module(self, module: types.ModuleType) -> None:
        name = module._flshell_name
        _real_module(name)  # run the importing job's module now, so errors show at the import line
        with _lock:
            _proxies.add(name)
        module._flshell_ready = True

    def __repr__(self) -> str:
        return "<flshell per-job custom code>"


_LOADER = _ProxyLoader()


class _CustomFinder(importlib.abc.MetaPathFinder):
    """Front of sys.meta_path: names from the importing job's custom/ folder become per-job proxies."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not _dirs or fullname.startswith(PRIVATE_PREFIX):
            return None
        key = current_job_key()
        custom_dir = _dirs.get(key) if key else None
        if custom_dir is not None and _provides(custom_dir, fullname):
            return importlib.machinery.ModuleSpec(fullname, _LOADER, is_package=True)
        if key is None and "." not in fullname and any(_provides(d, fullname) for d in list(_dirs.values())):
            if importlib.machinery.PathFinder.find_spec(fullname) is None:
                _real_module(fullname)  # raises a clear "bound to no job" error
        return None


def install() -> None:
    """Put the finder at the front of sys.meta_path (idempotent)."""
    with _lock:
        if not any(isinstance(f, _CustomFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _CustomFinder())


def uninstall() -> None:
    """Unregister every job and remove the finder (for tests and shutdown)."""
    for key in list(_dirs):
        unregister(key)
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CustomFinder)]


def app_key(app: Any) -> str:
    """The default import key of an app: its resolved custom/ folder."""
    given = str(app.custom_dir)
    key = _app_keys.get(given)
    if key is None:
        key = _app_keys[given] = str(Path(given).resolve())
    return key


@contextmanager
def custom_imports(app: Any, key: str | None = None) -> Iterator[str | None]:
    """Register `app.custom_dir` (it stays registered; `unregister(key)` when the job ends) and bind to it."""
    if getattr(app, "custom_dir", None) is None:
        yield None
        return
    key = key or app_key(app)
    register_custom_dir(key, app.custom_dir)
    with job_import_context(key):
        yield key
