"""One federation, three doors: the server side every way of running shares (`FederationServer`)
and the embedded local federation (`LocalFederation`) built on it."""

from runtime.federation.local import LocalFederation
from runtime.federation.server import FederationServer

__all__ = ["FederationServer", "LocalFederation"]
