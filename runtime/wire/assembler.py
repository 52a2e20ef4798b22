"""Streams rebuilt as they arrive: feed the chunks of `iter_chunks` / `iter_model_chunks` one by
one; each chunk is copied straight into its arrays, so memory stays about 1x the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.model import FLModel
from runtime.wire.codec import (_WIRE_DTYPES, META_ARRAY, PREFIX_SIZE, BFloat16Mode, Buffer, DecodeTarget,
                                WireError, WireLimitError, _bytes_view, _check_mode, _check_to,
                                _Entry, _model_from, _outputs, _parse_header, _q, _read_prefix)


class _Assembler:
    """Rebuilds a stream fed chunk by chunk, copying each chunk straight into its arrays.

    Arrays are allocated when their first byte arrives; discard the assembler after an error.
    """

    def __init__(self, max_bytes: int | None = None, bfloat16: BFloat16Mode = "uint16",
                 to: DecodeTarget = "auto") -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self._bf16 = _check_mode(bfloat16)
        self._to = _check_to(to)
        self._head = bytearray()
        self._size: int | None = None
        self._header: dict[str, Any] | None = None
        self._entries: list[_Entry] = []
        self._total = self._pos = self._index = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._flat: memoryview | None = None

    def _check_limit(self, announced: int) -> None:
        if self.max_bytes is not None and announced > self.max_bytes:
            raise WireLimitError(f"stream announces {announced} bytes, more than max_bytes="
                            f"{self.max_bytes}")

    def _alloc(self, name: str, dt: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            arr = self._arrays[name] = np.empty(shape, dtype=_WIRE_DTYPES[dt])
        except (ValueError, MemoryError) as e:
            raise WireError(f"entry {_q(name)}: cannot allocate {shape} of {dt}: {e}") from None
        return arr

    def feed(self, chunk: Buffer) -> None:
        mv = _bytes_view(chunk)
        self.received += len(mv)
        while self._header is None:
            need = PREFIX_SIZE if self._size is None else PREFIX_SIZE + self._size
            take = need - len(self._head)
            self._head += mv[:take]
            mv = mv[take:]
            if len(self._head) < need:
                return
            if self._size is None:
                self._size = _read_prefix(self._head)
                self._check_limit(PREFIX_SIZE + self._size)
            else:
                self._header, entries, self._total = _parse_header(self._head[PREFIX_SIZE:])
                self._entries = entries or []
                self._check_limit(need + self._total)
                self._head = bytearray()
        if len(mv) > self._total - self._pos:
            raise WireError(f"too many bytes: the header announces {self._total} data bytes, "
                            f"received at least {self._pos + len(mv)}")
        while len(mv):
            name, _, dt, shape, off, n = self._entries[self._index]
            if self._pos < off:  # alignment padding
                k = min(len(mv), off - self._pos)
            else:
                if self._flat is None:
                    self._flat = memoryview(self._alloc(name, dt, shape).reshape(-1).view(np.uint8))
                k = min(len(mv), off + n - self._pos)
                self._flat[self._pos - off:self._pos - off + k] = mv[:k]
            self._pos += k
            mv = mv[k:]
            if self._pos == off + n:
                self._index += 1
                self._flat = None

    def _finish(self) -> dict[str, Any] | None:
        if self._header is None:
            raise WireError(f"truncated stream: header incomplete after {self.received} bytes")
        if self._pos < self._total:
            raise WireError(f"truncated stream: received {self._pos} of {self._total} data bytes")
        if self._header["params"] is None and not self._header.get("arrays"):
            return None
        for name, _, dt, shape, _, _ in self._entries:
            if name not in self._arrays:  # empty, so no byte of it arrived
                self._alloc(name, dt, shape)
        return _outputs(self._entries, self._arrays, self._to, self._bf16)


class ParamsAssembler(_Assembler):
    """feed() the chunks of `iter_chunks`, then result(); memory stays about 1x the model.

    bfloat16 and to are those of `decode_params`; tensors share the assembled arrays' memory.
    """

    def result(self) -> dict[str, Any]:
        params = self._finish()
        if params is None or self._header["params"] is None:
            raise WireError("the stream holds an FLModel with params=None; use ModelAssembler")
        return {k: v for k, v in params.items() if not k.startswith(META_ARRAY)}


class ModelAssembler(_Assembler):
    """feed() the chunks of `iter_model_chunks`, then result() -> FLModel."""

    def result(self) -> FLModel:
        params = self._finish()
        assert self._header is not None
        return _model_from(self._header, params)
