"""Params wire format: a JSON header plus raw little-endian array buffers, chunkable; no pickle."""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Iterable, Iterator, Literal, Union

import numpy as np

from runtime.model import FLModel, ParamsType

MAGIC = b"FLP1"
VERSION = 1
PREFIX_SIZE = 8  # MAGIC + u32 little-endian header length
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 1_000_000
MAX_NDIM = 64
ALIGN = 64  # every array starts at a multiple of ALIGN from the stream start
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024

BFloat16Mode = Literal["uint16", "float32", "ml_dtypes"]
Buffer = Union[bytes, bytearray, memoryview]
_Entry = tuple[str, str, tuple[int, ...], int, int]  # name, dtype, shape, offset, nbytes

_WIRE_DTYPES: dict[str, np.dtype] = {
    n: np.dtype(n).newbyteorder("<")
    for n in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128")
}
_WIRE_DTYPES["bfloat16"] = np.dtype("<u2")  # carried as raw bits
_ENTRY_KEYS = frozenset({"name", "kind", "dtype", "shape", "offset", "nbytes"})
_MODEL_DICTS = ("metrics", "meta", "optimizer_params")
_MODEL_INTS = ("current_round", "total_rounds", "start_round")


class WireError(ValueError):
    """A params or model stream that cannot be encoded or decoded; the message says why."""


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _q(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bytes_view(data: Any) -> memoryview:
    try:
        mv = memoryview(data)
    except TypeError:
        raise WireError(f"expected bytes-like data, got {type(data).__name__}") from None
    if not mv.c_contiguous:
        raise WireError("expected a contiguous buffer")
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def _as_array(name: str, value: Any) -> tuple[np.ndarray, str]:
    """The numpy array sent for params[name] and its wire dtype (hook: other kinds, e.g. torch)."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise WireError(f"params[{_q(name)}]: {type(value).__name__} value cannot be sent ({e}); "
                        "use numeric arrays") from None
    if arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2:  # ml_dtypes.bfloat16
        return arr.view(np.uint16), "bfloat16"
    if arr.dtype.kind not in "biufc" or arr.dtype.name not in _WIRE_DTYPES:
        raise WireError(f"params[{_q(name)}]: dtype {arr.dtype} cannot be sent; use numeric arrays")
    return arr, arr.dtype.name


def _plan(params: Any) -> tuple[list[dict[str, Any]], list[np.ndarray], int]:
    if not isinstance(params, dict):
        raise WireError(f"params: expected a dict of arrays, got {type(params).__name__}")
    entries: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []
    end = 0
    for name, value in params.items():
        if not isinstance(name, str):
            raise WireError(f"params: key {name!r} of type {type(name).__name__} is not a str")
        arr, dt = _as_array(name, value)
        off = _align(end)
        end = off + arr.size * arr.dtype.itemsize
        entries.append({"name": name, "kind": "numpy", "dtype": dt, "shape": list(arr.shape),
                        "offset": off, "nbytes": end - off})
        arrays.append(arr)
    return entries, arrays, end


def _header(entries: list[dict[str, Any]] | None, model: dict[str, Any] | None) -> bytes:
    head: dict[str, Any] = {"version": VERSION, "params": entries}
    if model is not None:
        head["model"] = model
    text = json.dumps(head, separators=(",", ":"), allow_nan=True).encode("utf-8")
    size = _align(PREFIX_SIZE + len(text)) - PREFIX_SIZE  # pad so the data region is aligned
    if size > MAX_HEADER_BYTES:
        raise WireError(f"header of {size} bytes exceeds the limit of {MAX_HEADER_BYTES} bytes")
    return MAGIC + struct.pack("<I", size) + text + b" " * (size - len(text))


def _pieces(entries: list[dict[str, Any]] | None, arrays: list[np.ndarray],
            model: dict[str, Any] | None) -> Iterator[Buffer]:
    yield _header(entries, model)
    pos = 0
    for e, arr in zip(entries or [], arrays):
        if e["offset"] > pos:
            yield bytes(e["offset"] - pos)
        # one contiguous little-endian copy only when needed (non-contiguous or big-endian)
        wire = np.asarray(arr, dtype=_WIRE_DTYPES[e["dtype"]], order="C")
        yield memoryview(wire.reshape(-1).view(np.uint8))
        pos = e["offset"] + e["nbytes"]


def _chunked(pieces: Iterable[Buffer], chunk_size: int) -> Iterator[bytes]:
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    pending = bytearray()
    for piece in pieces:
        mv = memoryview(piece)
        while len(mv):
            if not pending and len(mv) >= chunk_size:
                yield bytes(mv[:chunk_size])
                mv = mv[chunk_size:]
                continue
            take = chunk_size - len(pending)
            pending += mv[:take]
            mv = mv[take:]
            if len(pending) == chunk_size:
                yield bytes(pending)
                pending = bytearray()
    if pending:
        yield bytes(pending)


def encoded_size(params: dict[str, Any]) -> int:
    """Length in bytes of `encode_params(params)`, computed without encoding."""
    entries, _, end = _plan(params)
    return len(_header(entries, None)) + end


def iter_chunks(params: dict[str, Any], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """The encoded stream in chunks of at most chunk_size bytes, never holding it all."""
    entries, arrays, _ = _plan(params)
    return _chunked(_pieces(entries, arrays, None), chunk_size)


def encode_params(params: dict[str, Any]) -> bytes:
    """The whole encoded stream as one bytes object."""
    entries, arrays, _ = _plan(params)
    return b"".join(_pieces(entries, arrays, None))


def _jsonable(value: Any, path: str, depth: int = 0) -> Any:
    if depth > 100:
        raise WireError(f"{path}: nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise WireError(f"{path}: key {k!r} of type {type(k).__name__} is not a str")
            out[k] = _jsonable(v, f"{path}[{_q(k)}]", depth + 1)
        return out
    raise WireError(f"{path}: value of type {type(value).__name__} is not JSON-compatible")


def _model_plan(model: FLModel) -> tuple[list[dict[str, Any]] | None, list[np.ndarray], dict]:
    if not isinstance(model, FLModel):
        raise WireError(f"expected an FLModel, got {type(model).__name__}")
    d: dict[str, Any] = {"params_type": None}
    if model.params_type is not None:
        try:
            d["params_type"] = ParamsType(str(model.params_type).upper()).value
        except ValueError:
            raise WireError(f"FLModel.params_type: expected FULL or DIFF, got "
                            f"{model.params_type!r}") from None
    for f in _MODEL_DICTS:
        v = getattr(model, f)
        if v is not None and not isinstance(v, dict):
            raise WireError(f"FLModel.{f}: expected a dict or None, got {type(v).__name__}")
        d[f] = _jsonable(v, f"FLModel.{f}")
    for f in _MODEL_INTS:
        v = getattr(model, f)
        if v is not None and not (_is_int(v) or isinstance(v, np.integer)):
            raise WireError(f"FLModel.{f}: expected an int or None, got {type(v).__name__}")
        d[f] = None if v is None else int(v)
    if model.params is None:
        return None, [], d
    entries, arrays, _ = _plan(model.params)
    return entries, arrays, d


def encode_model(model: FLModel) -> bytes:
    """An FLModel (params plus its JSON-compatible fields) as one bytes object."""
    return b"".join(_pieces(*_model_plan(model)))


def iter_model_chunks(model: FLModel, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """`encode_model(model)` in chunks of at most chunk_size bytes, never holding it all."""
    return _chunked(_pieces(*_model_plan(model)), chunk_size)


def _read_prefix(prefix: Buffer) -> int:
    magic = bytes(prefix[:4])
    if magic != MAGIC:
        what = "unsupported wire version" if magic[:3] == MAGIC[:3] else "bad magic"
        raise WireError(f"{what} {magic!r}: not an {MAGIC.decode()} params stream")
    (size,) = struct.unpack("<I", bytes(prefix[4:PREFIX_SIZE]))
    if size > MAX_HEADER_BYTES:
        raise WireError(f"header length {size} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    return size


def _parse_header(raw: Buffer) -> tuple[dict[str, Any], list[_Entry] | None, int]:
    try:
        head = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"header is not valid UTF-8 JSON: {str(e)[:200]}") from None
    if not isinstance(head, dict) or "params" not in head:
        raise WireError("header is not a params stream header (no 'params')")
    if head.get("version") != VERSION:
        raise WireError(f"unsupported header version {head.get('version')!r:.40} "
                        f"(expected {VERSION})")
    ents = head["params"]
    if ents is None:
        return head, None, 0
    if not isinstance(ents, list):
        raise WireError("header 'params' must be a list of entries or null")
    if len(ents) > MAX_ENTRIES:
        raise WireError(f"header lists {len(ents)} entries, more than the limit of {MAX_ENTRIES}")
    out: list[_Entry] = []
    names: set[str] = set()
    end = 0
    for i, e in enumerate(ents):
        where = f"header entry {i}"
        if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
            raise WireError(f"{where}: expected an object with keys {sorted(_ENTRY_KEYS)}")
        name, dt, shape, off, n = e["name"], e["dtype"], e["shape"], e["offset"], e["nbytes"]
        if not isinstance(name, str) or name in names:
            raise WireError(f"{where}: name must be a unique str, got {name!r:.80}")
        where = f"header entry {i} ({_q(name)[:80]})"
        if e["kind"] != "numpy":
            raise WireError(f"{where}: unsupported kind {e['kind']!r:.40}")
        if not isinstance(dt, str) or dt not in _WIRE_DTYPES:
            raise WireError(f"{where}: dtype {dt!r:.40} is not allowed")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(_is_int(d) and 0 <= d < 2**62 for d in shape)):
            raise WireError(f"{where}: bad shape {shape!r:.80} (need up to {MAX_NDIM} "
                            "non-negative ints)")
        if not (_is_int(off) and _is_int(n) and off >= 0 and n >= 0):
            raise WireError(f"{where}: offset and nbytes must be non-negative ints")
        need = math.prod(shape) * _WIRE_DTYPES[dt].itemsize
        if need != n:
            raise WireError(f"{where}: shape {shape} of {dt} needs {need} bytes, header says {n}")
        expect = _align(end)
        if off != expect:
            why = "overlaps the previous entry" if off < expect else "leaves a gap"
            raise WireError(f"{where}: offset {off} {why} (expected {expect})")
        names.add(name)
        out.append((name, dt, tuple(shape), off, n))
        end = off + n
    return head, out, end


def _check_mode(bfloat16: str) -> str:
    if bfloat16 not in ("uint16", "float32", "ml_dtypes"):
        raise ValueError(f"bfloat16 must be 'uint16', 'float32' or 'ml_dtypes', got {bfloat16!r}")
    if bfloat16 == "ml_dtypes":
        import ml_dtypes  # noqa: F401  (fails early and clearly when absent)
    return bfloat16


def _finish_array(arr: np.ndarray, dt: str, bfloat16: str) -> np.ndarray:
    if not arr.dtype.isnative:  # big-endian host
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if dt != "bfloat16" or bfloat16 == "uint16":
        return arr
    if bfloat16 == "float32":  # exact widening
        return (arr.astype(np.uint32) << 16).view(np.float32)
    import ml_dtypes
    return arr.view(ml_dtypes.bfloat16)


def _model_from(head: dict[str, Any], params: dict[str, np.ndarray] | None) -> FLModel:
    m = head.get("model", {})
    defaults = FLModel()
    if not isinstance(m, dict) or not set(m) <= {"params_type", *_MODEL_DICTS, *_MODEL_INTS}:
        raise WireError("header 'model' must be an object with FLModel's fields")
    for f in _MODEL_DICTS:
        if not isinstance(m.get(f), (dict, type(None))):
            raise WireError(f"header model.{f}: expected an object or null")
    for f in _MODEL_INTS:
        if m.get(f) is not None and not _is_int(m[f]):
            raise WireError(f"header model.{f}: expected an int or null")
    pt = m.get("params_type", "FULL")
    if pt not in ("FULL", "DIFF", None):
        raise WireError(f"header model.params_type: expected FULL, DIFF or null, got {pt!r:.40}")
    return FLModel(params=params, params_type=None if pt is None else ParamsType(pt),
                   metrics=m.get("metrics"), meta=m.get("meta") or {},
                   current_round=m.get("current_round", defaults.current_round),
                   total_rounds=m.get("total_rounds", defaults.total_rounds),
                   start_round=m.get("start_round", defaults.start_round),
                   optimizer_params=m.get("optimizer_params"))


def _decode(data: Buffer, copy: bool, bfloat16: str) -> tuple[dict, dict[str, np.ndarray] | None]:
    _check_mode(bfloat16)
    mv = _bytes_view(data)
    if len(mv) < PREFIX_SIZE:
        raise WireError(f"truncated stream: {len(mv)} bytes, need at least {PREFIX_SIZE}")
    size = _read_prefix(mv)
    if PREFIX_SIZE + size > len(mv):
        raise WireError(f"header length {size} is larger than the data "
                        f"({len(mv) - PREFIX_SIZE} bytes after the prefix)")
    head, entries, total = _parse_header(mv[PREFIX_SIZE:PREFIX_SIZE + size])
    body = mv[PREFIX_SIZE + size:]
    if len(body) < total:
        raise WireError(f"truncated stream: data region has {len(body)} bytes, header "
                        f"announces {total}")
    if len(body) > total:
        raise WireError(f"{len(body) - total} trailing bytes after the data region")
    if entries is None:
        return head, None
    out = {}
    for name, dt, shape, off, n in entries:
        try:
            arr = np.frombuffer(body[off:off + n], dtype=_WIRE_DTYPES[dt]).reshape(shape)
        except (ValueError, MemoryError) as e:
            raise WireError(f"entry {_q(name)}: {e}") from None
        if copy:
            arr = arr.copy()
        else:
            arr.flags.writeable = False
        out[name] = _finish_array(arr, dt, bfloat16)
    return head, out


def decode_params(data: Buffer, copy: bool = True,
                  bfloat16: BFloat16Mode = "uint16") -> dict[str, np.ndarray]:
    """Arrays from an encoded stream: writeable copies, or read-only zero-copy views if not copy.

    bfloat16 entries come back as "uint16" raw bits (default; do not do arithmetic on them),
    "float32" (exact widening) or "ml_dtypes" (ml_dtypes.bfloat16; needs that package).
    """
    _, params = _decode(data, copy, bfloat16)
    if params is None:
        raise WireError("the stream holds an FLModel with params=None; use decode_model")
    return params


def decode_model(data: Buffer, copy: bool = True, bfloat16: BFloat16Mode = "uint16") -> FLModel:
    """The FLModel from `encode_model` (a plain params stream gives FLModel defaults)."""
    return _model_from(*_decode(data, copy, bfloat16))


class _Assembler:
    """Rebuilds a stream fed chunk by chunk, copying each chunk straight into its arrays.

    Arrays are allocated when their first byte arrives; discard the assembler after an error.
    """

    def __init__(self, max_bytes: int | None = None, bfloat16: BFloat16Mode = "uint16") -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self._bf16 = _check_mode(bfloat16)
        self._head = bytearray()
        self._size: int | None = None
        self._header: dict[str, Any] | None = None
        self._entries: list[_Entry] = []
        self._total = self._pos = self._index = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._flat: memoryview | None = None

    def _check_limit(self, announced: int) -> None:
        if self.max_bytes is not None and announced > self.max_bytes:
            raise WireError(f"stream announces {announced} bytes, more than max_bytes="
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
            name, dt, shape, off, n = self._entries[self._index]
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

    def _finish(self) -> dict[str, np.ndarray] | None:
        if self._header is None:
            raise WireError(f"truncated stream: header incomplete after {self.received} bytes")
        if self._pos < self._total:
            raise WireError(f"truncated stream: received {self._pos} of {self._total} data bytes")
        if self._header["params"] is None:
            return None
        return {name: _finish_array(self._arrays[name] if name in self._arrays
                                    else self._alloc(name, dt, shape), dt, self._bf16)
                for name, dt, shape, _, _ in self._entries}


class ParamsAssembler(_Assembler):
    """feed() the chunks of `iter_chunks`, then result(); memory stays about 1x the model."""

    def result(self) -> dict[str, np.ndarray]:
        params = self._finish()
        if params is None:
            raise WireError("the stream holds an FLModel with params=None; use ModelAssembler")
        return params


class ModelAssembler(_Assembler):
    """feed() the chunks of `iter_model_chunks`, then result() -> FLModel."""

    def result(self) -> FLModel:
        params = self._finish()
        assert self._header is not None
        return _model_from(self._header, params)
