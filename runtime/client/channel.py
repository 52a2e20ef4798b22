"""The local channel between a site and a script in its own process: framed messages over a
loopback socket, models in flshell's wire format (never pickle)."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from runtime.model import FLModel

HELLO, TASK, RESULT, METRICS, END = b"H", b"T", b"R", b"M", b"E"
_HEAD = struct.Struct(">cQI")  # kind, total payload length, JSON part length
MAX_JSON = 16 << 20

ENV_CHANNEL = "FLSHELL_SITE_CHANNEL"
ENV_TOKEN = "FLSHELL_SITE_TOKEN"
ENV_INFO = "FLSHELL_SITE_INFO"


class ChannelClosed(ConnectionError):
    """The other side went away."""


def send_frame(sock: socket.socket, kind: bytes, header: dict[str, Any],
               model: FLModel | None = None) -> None:
    from runtime.wire import encode_model

    head = json.dumps(header).encode()
    body = encode_model(model) if model is not None else b""
    sock.sendall(_HEAD.pack(kind, len(head) + len(body), len(head)) + head)
    if body:
        sock.sendall(body)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ChannelClosed("the channel closed")
        got += k
    return buf


def recv_frame(sock: socket.socket) -> tuple[bytes, dict[str, Any], FLModel | None]:
    from runtime.wire import decode_model

    kind, total, head_len = _HEAD.unpack(bytes(_recv_exact(sock, _HEAD.size)))
    if head_len > min(total, MAX_JSON):
        raise ConnectionError(f"malformed frame: header of {head_len} bytes")
    header = json.loads(bytes(_recv_exact(sock, head_len)))
    body = _recv_exact(sock, total - head_len) if total > head_len else None
    model = decode_model(body, to="auto") if body else None
    return kind, header, model
