"""Transports under contract: every implementation of SiteTransport is listed here.

The gRPC issue adds its factory to TRANSPORTS; the tests in this folder must then pass for it too.
"""

from __future__ import annotations

from typing import Callable

import pytest

from runtime.server.engine import ServerEngine
from runtime.transport import InProcTransport, SiteTransport


def _inproc(engine: ServerEngine) -> tuple[SiteTransport, Callable[[], None]]:
    t = InProcTransport(engine)
    return t, t.close


TRANSPORTS = {"inproc": _inproc}


@pytest.fixture(params=sorted(TRANSPORTS))
def wired(request, tmp_path):
    """(engine, transport): a real server engine and a transport connected to it."""
    engine = ServerEngine(tmp_path / "server")
    transport, close = TRANSPORTS[request.param](engine)
    yield engine, transport
    close()
    engine.close()
