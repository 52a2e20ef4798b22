"""Import a component's dotted path and check JSON args against its constructor's signature."""
from __future__ import annotations

import difflib
import importlib
import inspect
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Callable

from .errors import JobError, join_path, names, render

_HERE = str(Path(__file__).resolve().parent)
_IMPORTLIB = str(Path(importlib.__file__).resolve().parent)
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def where_raised(exc: BaseException) -> str:
    """`ExcType: message (at file:line)` for the innermost frame outside importlib and this package."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} (at {exc.filename}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(("<frozen", _HERE, _IMPORTLIB))]
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"{last} (at {frames[-1].filename}:{frames[-1].lineno})" if frames else last


def import_object(path: str, file: str | None, json_path: str | None) -> Any:
    """Import `package.module.Name`; JobError at `<json_path>.path` tells a missing module from a broken one."""
    module_name, _, attr = path.rpartition(".")
    at = join_path(json_path, "path")

    def missing(exc: ModuleNotFoundError) -> bool:
        return bool(exc.name) and (module_name == exc.name or module_name.startswith(exc.name + "."))

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise _import_error(path, file, at, e, missing(e)) from e
    except Exception as e:
        raise JobError(file, at, f'cannot import "{path}": {where_raised(e)}') from e
    try:
        return getattr(module, attr)
    except ModuleNotFoundError as e:  # a per-job proxy whose job has no such module
        raise _import_error(path, file, at, e, missing(e)) from e
    except AttributeError as e:
        if getattr(e, "name", attr) != attr:
            raise JobError(file, at, f'cannot import "{path}": {where_raised(e)}') from e
        close = difflib.get_close_matches(attr, [n for n in dir(module) if not n.startswith("_")], n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise JobError(file, at, f'cannot import "{path}": module "{module_name}" has no attribute '
                                 f'"{attr}"{hint}') from None
    except Exception as e:
        raise JobError(file, at, f'cannot import "{path}": {where_raised(e)}') from e


def _import_error(path: str, file: str | None, at: str, exc: ModuleNotFoundError, missing: bool) -> JobError:
    if missing:
        return JobError(file, at, f'cannot import "{path}": no module named "{exc.name}"')
    return JobError(file, at, f'cannot import "{path}": {where_raised(exc)}')


_HINTS: dict[Any, dict[str, Any]] = {}
_SIGNATURES: dict[Any, Any] = {}


def _hints(target: Callable) -> dict[str, Any]:
    """Type hints of `target`, cached: evaluating string annotations compiles code each time."""
    try:
        return _HINTS[target]
    except (KeyError, TypeError):
        pass
    hints = _eval_hints(target)
    try:
        _HINTS[target] = hints
    except TypeError:
        pass
    return hints


def _signature(target: Callable) -> Any:
    try:
        return _SIGNATURES[target]
    except (KeyError, TypeError):
        pass
    sig = inspect.signature(target)
    try:
        _SIGNATURES[target] = sig
    except TypeError:
        pass
    return sig


def _eval_hints(target: Callable) -> dict[str, Any]:
    func = target.__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: keep the annotations that are real objects
        raw = getattr(func, "__annotations__", {}) or {}
        return {k: v for k, v in raw.items() if not isinstance(v, str)}


def _check_type(ann: Any, value: Any) -> tuple[bool, str] | None:
    """(accepted, description) for simple annotations; None when the annotation is not checkable."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        results = []
        for member in typing.get_args(ann):
            result = (value is None, "null") if member is type(None) else _check_type(member, value)
            if result is None:
                return None
            results.append(result)
        return any(ok for ok, _ in results), " or ".join(d for _, d in results)
    base = origin or ann
    is_int = isinstance(value, int) and not isinstance(value, bool)
    simple: dict[Any, tuple[bool, str]] = {
        bool: (isinstance(value, bool), "true or false"),
        int: (is_int, "an integer"),
        float: (is_int or isinstance(value, float), "a number"),
        str: (isinstance(value, str), "a string"),
        list: (isinstance(value, list), "a list"),
        tuple: (isinstance(value, list), "a list"),
        dict: (isinstance(value, dict), "an object"),
    }
    return simple.get(base) if isinstance(base, type) else None


def check_call(target: Callable, args: dict[str, Any], file: str | None, json_path: str | None,
               skip_types: set[str] = frozenset()) -> None:
    """Check arg names (unknown, missing) and simple JSON types against `target`'s signature."""
    try:
        params = _signature(target).parameters
    except (TypeError, ValueError):
        return
    at = join_path(json_path, "args")
    named = {n: p for n, p in params.items() if p.kind in _KEYWORD}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for arg in args:
            if arg not in named:
                close = difflib.get_close_matches(arg, list(named), n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                raise JobError(file, at, f'unknown argument "{arg}" ({hint}accepted: {names(list(named), 30)})')
    for name, p in params.items():
        if p.default is p.empty and name not in args and p.kind in _KEYWORD:
            raise JobError(file, at, f'missing required argument "{name}"')
        if p.default is p.empty and p.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise JobError(file, join_path(json_path, "path"),
                           f'cannot build: required argument "{name}" is positional-only')
    hints = _hints(target)
    for arg, value in args.items():
        if arg in skip_types or arg not in hints:
            continue
        result = _check_type(hints[arg], value)
        if result is not None and not result[0]:
            raise JobError(file, join_path(at, arg), f"expected {result[1]}, got {render(value)}")
