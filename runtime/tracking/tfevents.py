"""TensorBoard event files: TFRecords of hand-encoded Event protos, no TensorBoard needed."""

from __future__ import annotations

import itertools
import math
import numbers
import operator
import os
import socket
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable

FILE_VERSION = "brain.Event:2"
FLUSH_BYTES = 64 * 1024
_CRC_MASK_DELTA = 0xA282EAD8
_file_counter = itertools.count()


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c_table(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, computed with a 256-entry table in pure Python."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _fast_crc32c() -> Callable[[bytes], int] | None:
    try:
        import google_crc32c  # type: ignore[import-not-found]

        return google_crc32c.value
    except ImportError:
        pass
    try:
        import crc32c as crc32c_module  # type: ignore[import-not-found]

        return crc32c_module.crc32c
    except ImportError:
        return None


crc32c: Callable[[bytes], int] = _fast_crc32c() or crc32c_table


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C of `data`, masked the way TFRecord stores it."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # beyond float32 range: TensorBoard would see +-inf anyway
        return struct.pack("<f", math.copysign(math.inf, value))


def encode_event(
    wall_time: float,
    step: int = 0,
    file_version: str | None = None,
    scalar: tuple[str, float] | None = None,
) -> bytes:
    """Serialize an Event proto: wall_time, step, file_version and at most one scalar value."""
    out = b"\x09" + struct.pack("<d", wall_time)  # field 1, fixed64
    if step:
        out += b"\x10" + _varint(step)  # field 2, varint
    if file_version is not None:
        out += _length_delimited(3, file_version.encode("utf-8"))
    if scalar is not None:
        tag, value = scalar
        summary_value = _length_delimited(1, tag.encode("utf-8")) + b"\x15" + _float32(value)
        out += _length_delimited(5, _length_delimited(1, summary_value))
    return out


def check_scalar(tag: str, value: float, step: int) -> tuple[float, int]:
    """Validate one scalar's tag, value and step; return the value as float and step as int."""
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"scalar tag must be a non-empty string, got {tag!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"scalar {tag!r}: value must be a real number, got {type(value).__name__}")
    if isinstance(step, bool):
        raise TypeError(f"scalar {tag!r}: step must be an int, got bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"scalar {tag!r}: step must be an int, got {type(step).__name__}") from None
    if step < 0:
        raise ValueError(f"scalar {tag!r}: step must be >= 0, got {step}")
    try:
        return float(value), step
    except OverflowError:
        raise ValueError(f"scalar {tag!r}: value {value!r} is too large for a float") from None


class EventFileWriter:
    """Appends scalar summaries to one TensorBoard event file under `logdir` (thread-safe)."""

    def __init__(self, logdir: str | Path, filename_suffix: str = "") -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = "events.out.tfevents.%010d.%s.%s.%s%s" % (
            int(now), socket.gethostname(), os.getpid(), next(_file_counter), filename_suffix
        )
        self.path = self.logdir / name
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._closed = False
        self._file = open(self.path, "wb")
        self._file.write(tfrecord(encode_event(now, file_version=FILE_VERSION)))
        self._file.flush()

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Buffer one scalar; it reaches the file on flush(), close() or when the buffer is full."""
        value, step = check_scalar(tag, value, step)
        wall_time = time.time() if wall_time is None else float(wall_time)
        record = tfrecord(encode_event(wall_time, step, scalar=(tag, value)))
        with self._lock:
            if self._closed:
                raise ValueError(f"event file {self.path} is closed")
            self._buffer.append(record)
            self._buffered += len(record)
            if self._buffered >= FLUSH_BYTES:
                self._write_buffer()

    def flush(self) -> None:
        """Write buffered records to the file."""
        with self._lock:
            if not self._closed:
                self._write_buffer()

    def close(self) -> None:
        """Flush and close the file; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            try:
                self._write_buffer()
            finally:
                self._closed = True
                self._file.close()

    def _write_buffer(self) -> None:
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0
        self._file.flush()

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
