"""`{var}` substitution in component args: exact refs keep their JSON type, embedded refs become text."""
from __future__ import annotations

import copy
import re
from typing import Any, Iterator, Mapping

from .errors import JobError, join_path, names

VAR_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Variables the runtime passes when it builds components; a job may use them without defining them.
SYSTEM_VARIABLES: set[str] = {"SITE_NAME", "JOB_ID", "APP_DIR", "JOB_DIR", "WORKSPACE", "ROOT_DIR"}


def substitute(value: Any, variables: Mapping[str, Any], file: str | None = None,
               json_path: str | None = None) -> Any:
    """Return a copy of `value` with `{name}` references replaced; unknown names raise JobError."""
    if isinstance(value, dict):
        return {k: substitute(v, variables, file, join_path(json_path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, file, join_path(json_path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "{" not in value:
        return value

    def lookup(name: str) -> Any:
        if name not in variables:
            raise JobError(file, json_path,
                           f"unknown variable {{{name}}} (defined: {names(sorted(variables))})")
        return variables[name]

    whole = VAR_REF.fullmatch(value)
    if whole:
        return copy.deepcopy(lookup(whole.group(1)))
    return VAR_REF.sub(lambda m: str(lookup(m.group(1))), value)


def references(value: Any, json_path: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield `(json_path, name)` for every `{name}` reference inside `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from references(v, join_path(json_path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from references(v, join_path(json_path, i))
    elif isinstance(value, str):
        for m in VAR_REF.finditer(value):
            yield json_path or "", m.group(1)


def check_references(args: Any, defined: Mapping[str, Any], file: str | None, json_path: str) -> None:
    """Load-time check: every reference names a file variable or one of SYSTEM_VARIABLES."""
    for path, name in references(args, json_path):
        if name not in defined and name not in SYSTEM_VARIABLES:
            known = sorted(set(defined) | SYSTEM_VARIABLES)
            raise JobError(file, path, f"unknown variable {{{name}}} (defined: {names(known, 20)})")
