"""Transports between sites and the server: the interface and its implementations."""

from runtime.transport.base import (
    FLHandler,
    JobEnd,
    SiteCommand,
    JobStart,
    JobState,
    NotRegistered,
    ServerClosing,
    SiteMessage,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
)
from runtime.transport.inproc import InProcTransport

__all__ = [
    "FLHandler",
    "InProcTransport",
    "JobEnd",
    "SiteCommand",
    "JobStart",
    "JobState",
    "NotRegistered",
    "ServerClosing",
    "SiteMessage",
    "SiteTransport",
    "TaskAssignment",
    "TaskResult",
    "TransportError",
]
