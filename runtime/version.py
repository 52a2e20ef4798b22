"""flshell's version, from the installed package's metadata (the server tells it in Hello)."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("flshell")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"
