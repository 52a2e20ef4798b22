"""One federation, three doors: the server side every way of running shares (`FederationServer`)
and the embedded local federation (`LocalFederation`) built on it; `runtime.federation.poc`
manages a POC, `runtime.federation.process` is `flshell server`'s process. Imported on first use:
a command that only names a default folder does not load the server."""

from __future__ import annotations

from typing import Any

__all__ = ["FederationServer", "LocalFederation"]


def __getattr__(name: str) -> Any:
    if name == "FederationServer":
        from runtime.federation.server import FederationServer

        return FederationServer
    if name == "LocalFederation":
        from runtime.federation.local import LocalFederation

        return LocalFederation
    raise AttributeError(f"module 'runtime.federation' has no attribute {name!r}")
