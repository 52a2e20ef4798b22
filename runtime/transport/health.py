"""gRPC health checking (grpc.health.v1) on any of our servers: SERVING while it takes calls."""

from __future__ import annotations

from typing import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

OVERALL = ""  # the name health checkers ask about for the server as a whole


class HealthState:
    """The health of one gRPC server: overall ("") and each named service move together."""

    def __init__(self, servicer: health.HealthServicer, services: Iterable[str]) -> None:
        self.servicer = servicer
        self.services = (OVERALL, *services)

    def _set(self, status: int) -> None:
        for name in self.services:
            self.servicer.set(name, status)

    def serving(self) -> None:
        self._set(health_pb2.HealthCheckResponse.SERVING)

    def not_serving(self) -> None:
        """Before a stop: load balancers and watchers stop sending new calls."""
        self._set(health_pb2.HealthCheckResponse.NOT_SERVING)


def add_health(grpc_server: grpc.Server, services: Iterable[str] = ()) -> HealthState:
    """Add the standard health service to `grpc_server` (before it starts); NOT_SERVING until
    the owner calls `serving()`. `services`: full service names, e.g. "flshell.admin.AdminService"."""
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, grpc_server)
    state = HealthState(servicer, services)
    state.not_serving()
    return state


# gRPC sets SO_REUSEPORT by default: a second server on a port in use would bind and take half
# the connections. Our ports are exclusive: binding one in use fails.
EXCLUSIVE_PORT = ("grpc.so_reuseport", 0)


class ServingPort:
    """A gRPC server bound to one port, with health: subclasses build `self.server`, add their
    servicer, then call `_bind`. SERVING once started, NOT_SERVING before it stops."""

    server: grpc.Server
    health: HealthState
    port: int
    address: str

    def _bind(self, service: str, what: str, host: str, port: int,
              credentials: grpc.ServerCredentials | None = None) -> None:
        self.health = add_health(self.server, [service])
        bind = f"{host}:{port}"
        if port:
            _check_free(host, port, what)
        try:
            self.port = (self.server.add_secure_port(bind, credentials) if credentials
                         else self.server.add_insecure_port(bind))
        except RuntimeError:
            raise OSError(f"could not bind the {what} on {bind}: the port is in use (by another "
                          "server?) or the address is not this host's") from None
        if self.port == 0:
            raise OSError(f"could not bind the {what} on {bind}: the port is in use (another "
                          "server?) or the address is not this host's")
        self.address = f"{host}:{self.port}"

    def start(self):
        self.server.start()
        self.health.serving()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        self.health.not_serving()
        self.server.stop(grace).wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_free(host: str, port: int, what: str) -> None:
    """OSError naming the port if something listens on it (said plainly, before gRPC logs)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"could not bind the {what} on {host}:{port}: {e}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as gRPC binds: connections of a server that just died (TIME_WAIT) do not count,
        # a socket listening there does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OSError(f"could not bind the {what} on {host}:{port}: the port is in use "
                              "(another server runs there?)") from None
            raise OSError(f"could not bind the {what} on {host}:{port}: {e.strerror}") from None
