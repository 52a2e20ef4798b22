"""Transports under contract: every implementation of SiteTransport is listed here.

Every test in this folder runs against each of them: a real engine behind a real transport
(the gRPC one is a real server on 127.0.0.1, port 0).
"""

from __future__ import annotations

from typing import Callable

import pytest

from runtime.server.engine import ServerEngine
from runtime.transport import InProcTransport, SiteTransport


def _inproc(engine: ServerEngine) -> tuple[SiteTransport, Callable[[], None]]:
    t = InProcTransport(engine)
    return t, t.close


def _grpc(engine: ServerEngine) -> tuple[SiteTransport, Callable[[], None]]:
    from runtime.transport.grpc_client import GrpcSiteTransport
    from runtime.transport.grpc_server import FLServer

    server = FLServer(engine, "127.0.0.1", 0).start()
    t = GrpcSiteTransport(server.address)

    def close() -> None:
        t.close()
        server.stop(0)

    return t, close


TRANSPORTS = {"inproc": _inproc, "grpc": _grpc}


@pytest.fixture(params=sorted(TRANSPORTS))
def wired(request, tmp_path):
    """(engine, transport): a real server engine and a transport connected to it."""
    engine = ServerEngine(tmp_path / "server")
    transport, close = TRANSPORTS[request.param](engine)
    yield engine, transport
    close()
    engine.close()
