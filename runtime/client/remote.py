"""Script side of launch_external_process: the Client API of a script in its own process."""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from runtime.client import channel
from runtime.model import FLModel


class RemoteSession:
    """What `import runtime.client as flare` talks to inside an external script."""

    def __init__(self, address: str, token: str, info: dict[str, Any]) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)))
        channel.send_frame(self.sock, channel.HELLO, {"token": token})
        self.info = {k: v for k, v in info.items() if k not in ("site_name", "job_id")}
        self.site = info["site_name"]
        self.job_id = info["job_id"]
        self.logger = None
        self._lock = threading.Lock()
        self._current: tuple[str, FLModel] | None = None
        self._ended = False
        self._metrics: list[dict[str, Any]] = []

    @classmethod
    def from_env(cls) -> "RemoteSession | None":
        address = os.environ.get(channel.ENV_CHANNEL)
        if not address:
            return None
        return cls(address, os.environ.get(channel.ENV_TOKEN, ""),
                   json.loads(os.environ.get(channel.ENV_INFO, "{}")))

    def _next(self) -> None:
        if self._current is not None or self._ended:
            return
        try:
            kind, header, model = channel.recv_frame(self.sock)
        except channel.ChannelClosed:
            self._ended = True
            return
        if kind == channel.TASK and model is not None:
            self._current = (header.get("task_name") or "train", model)
        else:
            self._ended = True

    def is_running(self) -> bool:
        with self._lock:
            self._next()
            return self._current is not None

    def receive(self, timeout: float | None = None) -> FLModel | None:
        with self._lock:
            self._next()
            return self._current[1] if self._current else None

    def send(self, model: FLModel) -> None:
        if not isinstance(model, FLModel):
            raise TypeError(f"flare.send() takes an FLModel, got {type(model).__name__}")
        with self._lock:
            if self._current is None:
                raise RuntimeError("flare.send() called with no task: call flare.receive() first")
            self.flush_metrics()
            channel.send_frame(self.sock, channel.RESULT, {}, model)
            self._current = None

    def record_metric(self, record: dict[str, Any]) -> None:
        self._metrics.append(record)

    def flush_metrics(self) -> None:
        if self._metrics:
            batch, self._metrics = self._metrics, []
            channel.send_frame(self.sock, channel.METRICS, {"records": batch})

    @property
    def task_name(self) -> str | None:
        return self._current[0] if self._current else None
