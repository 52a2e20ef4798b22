"""Params wire format: a JSON header plus raw little-endian array buffers, chunkable; no pickle.

Each header entry has a kind: "numpy" (numpy arrays, Python numbers) or "torch" (torch tensors,
sent from any device, detached). torch is optional and only loaded when a tensor is seen or torch
output is requested (see torch_support).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, Iterable, Iterator, Literal, Union

import numpy as np

from runtime.model import FLModel, ParamsType
from runtime.wire import torch_support
from runtime.wire.torch_support import TORCH_WIRE_DTYPES

MAGIC = b"FLP1"
VERSION = 1
PREFIX_SIZE = 8  # MAGIC + u32 little-endian header length
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 1_000_000
MAX_NDIM = 64
ALIGN = 64  # every array starts at a multiple of ALIGN from the stream start
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
ARRAY_KEY = "__flp_array__"  # in a model's meta JSON: {ARRAY_KEY: k} is the stream's k-th array
META_ARRAY = "\x00"  # names of the arrays found in meta start with it; params names may not

BFloat16Mode = Literal["uint16", "float32", "ml_dtypes"]
DecodeTarget = Literal["auto", "numpy", "torch"]
Buffer = Union[bytes, bytearray, memoryview]
_Entry = tuple[str, str, str, tuple[int, ...], int, int]  # name, kind, dtype, shape, offset, nbytes

_WIRE_DTYPES: dict[str, np.dtype] = {
    n: np.dtype(n).newbyteorder("<")
    for n in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128")
}
_WIRE_DTYPES["bfloat16"] = np.dtype("<u2")  # carried as raw bits
_KIND_DTYPES = {"numpy": frozenset(_WIRE_DTYPES), "torch": TORCH_WIRE_DTYPES}
_ENTRY_KEYS = frozenset({"name", "kind", "dtype", "shape", "offset", "nbytes"})
_MODEL_DICTS = ("metrics", "meta", "optimizer_params")
_MODEL_INTS = ("current_round", "total_rounds", "start_round")


class WireError(ValueError):
    """A params or model stream that cannot be encoded or decoded; the message says why."""


class WireLimitError(WireError):
    """A stream that announces more bytes than the receiver accepts (`max_bytes`); raised from
    the header alone, before anything is allocated."""


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


def _source(name: str, value: Any) -> tuple[Any, str, str, tuple[int, ...]]:
    """(source, kind, wire dtype, shape) sent for params[name]; the source is a numpy array or a
    detached tensor, which `_pieces` copies to the CPU only when its turn comes."""
    if torch_support.is_tensor(value):
        why = torch_support.problem(value)
        if why:
            raise WireError(f"params[{_q(name)}]: {why}")
        t = value.detach()
        return t, "torch", torch_support.wire_dtype(t), tuple(t.shape)
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise WireError(f"params[{_q(name)}]: {type(value).__name__} value cannot be sent ({e}); "
                        "use numeric arrays") from None
    if arr.dtype.name == "bfloat16" and arr.dtype.itemsize == 2:  # ml_dtypes.bfloat16
        return arr.view(np.uint16), "numpy", "bfloat16", arr.shape
    if arr.dtype.kind not in "biufc" or arr.dtype.name not in _WIRE_DTYPES:
        raise WireError(f"params[{_q(name)}]: dtype {arr.dtype} cannot be sent; use numeric arrays")
    return arr, "numpy", arr.dtype.name, arr.shape


def _plan(params: Any, end: int = 0) -> tuple[list[dict[str, Any]], list[Any], int]:
    if not isinstance(params, dict):
        raise WireError(f"params: expected a dict of arrays, got {type(params).__name__}")
    entries: list[dict[str, Any]] = []
    sources: list[Any] = []
    for name, value in params.items():
        if not isinstance(name, str):
            raise WireError(f"params: key {name!r} of type {type(name).__name__} is not a str")
        if name.startswith(META_ARRAY):
            raise WireError(f"params: key {name!r:.60} starts with a reserved character")
        src, kind, dt, shape = _source(name, value)
        off = _align(end)
        end = off + math.prod(shape) * _WIRE_DTYPES[dt].itemsize
        entries.append({"name": name, "kind": kind, "dtype": dt, "shape": list(shape),
                        "offset": off, "nbytes": end - off})
        sources.append(src)
    return entries, sources, end


def _header(entries: list[dict[str, Any]] | None, model: dict[str, Any] | None,
            arrays: list[dict[str, Any]] | None = None) -> bytes:
    head: dict[str, Any] = {"version": VERSION, "params": entries}
    if model is not None:
        head["model"] = model
    if arrays:
        head["arrays"] = arrays
    text = json.dumps(head, separators=(",", ":"), allow_nan=True).encode("utf-8")
    size = _align(PREFIX_SIZE + len(text)) - PREFIX_SIZE  # pad so the data region is aligned
    if size > MAX_HEADER_BYTES:
        raise WireError(f"header of {size} bytes exceeds the limit of {MAX_HEADER_BYTES} bytes")
    return MAGIC + struct.pack("<I", size) + text + b" " * (size - len(text))


def _tensor_array(name: str, t: Any) -> np.ndarray:
    try:
        return torch_support.to_numpy(t)
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. a failing device copy
        raise WireError(f"params[{_q(name)}]: tensor cannot be read: {e}") from None


def _pieces(entries: list[dict[str, Any]] | None, sources: list[Any],
            model: dict[str, Any] | None, arrays: list[dict[str, Any]] | None = None,
            array_sources: list[Any] | None = None) -> Iterator[Buffer]:
    yield _header(entries, model, arrays)
    pos = 0
    for e, src in zip([*(entries or []), *(arrays or [])], [*sources, *(array_sources or [])]):
        if e["offset"] > pos:
            yield bytes(e["offset"] - pos)
        arr = _tensor_array(e["name"], src) if e["kind"] == "torch" else src
        # one contiguous little-endian copy only when needed (non-contiguous or big-endian)
        wire = np.asarray(arr, dtype=_WIRE_DTYPES[e["dtype"]], order="C")
        yield memoryview(wire.reshape(-1).view(np.uint8))
        pos = e["offset"] + e["nbytes"]


def _chunked(pieces: Iterable[Buffer], chunk_size: int, copy: bool = True) -> Iterator[Buffer]:
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    pending = bytearray()
    for piece in pieces:
        mv = memoryview(piece)
        while len(mv):
            if not pending and len(mv) >= chunk_size:
                yield bytes(mv[:chunk_size]) if copy else mv[:chunk_size]
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
    """The encoded stream in chunks of at most chunk_size bytes, never holding it all (tensors on
    another device are copied to the CPU one at a time, as the stream reaches them)."""
    entries, sources, _ = _plan(params)
    return _chunked(_pieces(entries, sources, None), chunk_size)


def encode_params(params: dict[str, Any]) -> bytes:
    """The whole encoded stream as one bytes object.

    params maps str names to numpy arrays, numeric Python values or torch tensors (any device,
    strides or requires_grad; sent detached, bit for bit, with kind "torch").
    """
    entries, sources, _ = _plan(params)
    return b"".join(_pieces(entries, sources, None))


def _jsonable(value: Any, path: str, depth: int = 0, arrays: list | None = None) -> Any:
    """`value` as JSON; with `arrays`, numpy arrays and tensors found in it are appended there
    (path, array) and stand as {ARRAY_KEY: index} (they travel as raw buffers, like params)."""
    if depth > 100:
        raise WireError(f"{path}: nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if arrays is not None and (isinstance(value, np.ndarray) or torch_support.is_tensor(value)):
        arrays.append((path, value))
        return {ARRAY_KEY: len(arrays) - 1}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{path}[{i}]", depth + 1, arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise WireError(f"{path}: key {k!r} of type {type(k).__name__} is not a str")
            if k == ARRAY_KEY:
                raise WireError(f"{path}: the key {ARRAY_KEY!r} is reserved")
            out[k] = _jsonable(v, f"{path}[{_q(k)}]", depth + 1, arrays)
        return out
    raise WireError(f"{path}: value of type {type(value).__name__} is not JSON-compatible"
                    + ("" if arrays is None else " (arrays may go in meta, not here)"))


def _model_plan(model: FLModel) -> tuple[list[dict[str, Any]] | None, list[Any], dict,
                                         list[dict[str, Any]], list[Any]]:
    """(params entries or None, their sources, the model's JSON fields, entries of the arrays
    found in meta, their sources)."""
    if not isinstance(model, FLModel):
        raise WireError(f"expected an FLModel, got {type(model).__name__}")
    d: dict[str, Any] = {"params_type": None}
    found: list[tuple[str, Any]] = []
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
        d[f] = _jsonable(v, f"FLModel.{f}", arrays=found if f == "meta" else None)
    for f in _MODEL_INTS:
        v = getattr(model, f)
        if v is not None and not (_is_int(v) or isinstance(v, np.integer)):
            raise WireError(f"FLModel.{f}: expected an int or None, got {type(v).__name__}")
        d[f] = None if v is None else int(v)
    entries, sources, end = (None, [], 0) if model.params is None else _plan(model.params)
    extra: list[dict[str, Any]] = []
    extra_sources: list[Any] = []
    for k, (path, value) in enumerate(found):
        src, kind, dt, shape = _source(path, value)
        off = _align(end)
        end = off + math.prod(shape) * _WIRE_DTYPES[dt].itemsize
        extra.append({"name": f"{META_ARRAY}{k}", "kind": kind, "dtype": dt, "shape": list(shape),
                      "offset": off, "nbytes": end - off})
        extra_sources.append(src)
    return entries, sources, d, extra, extra_sources


def encode_model(model: FLModel) -> bytes:
    """An FLModel (params plus its JSON-compatible fields) as one bytes object."""
    return b"".join(_pieces(*_model_plan(model)))


def iter_model_chunks(model: FLModel, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      copy: bool = True) -> Iterator[Buffer]:
    """`encode_model(model)` in chunks of at most chunk_size bytes, never holding it all.
    With `copy=False` most chunks are memoryviews into the model's arrays: use each before the
    arrays change (a transport that copies them into its frames at once)."""
    return _chunked(_pieces(*_model_plan(model)), chunk_size, copy)


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
    arrays = head.get("arrays", [])
    if ents is not None and not isinstance(ents, list):
        raise WireError("header 'params' must be a list of entries or null")
    if not isinstance(arrays, list):
        raise WireError("header 'arrays' must be a list of entries")
    if len(ents or ()) + len(arrays) > MAX_ENTRIES:
        raise WireError(f"header lists {len(ents or ()) + len(arrays)} entries, more than the "
                        f"limit of {MAX_ENTRIES}")
    for i, e in enumerate(arrays):
        if not isinstance(e, dict) or e.get("name") != f"{META_ARRAY}{i}":
            raise WireError(f"header 'arrays' entry {i}: expected the name {META_ARRAY + str(i)!r}")
    for i, e in enumerate(ents or ()):
        if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"].startswith(META_ARRAY):
            raise WireError(f"header entry {i}: a params name starts with a reserved character")
    if ents is None and not arrays:
        return head, None, 0
    out: list[_Entry] = []
    names: set[str] = set()
    end = 0
    for i, e in enumerate([*(ents or ()), *arrays]):
        where = f"header entry {i}"
        if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
            raise WireError(f"{where}: expected an object with keys {sorted(_ENTRY_KEYS)}")
        name, kind, dt, shape = e["name"], e["kind"], e["dtype"], e["shape"]
        off, n = e["offset"], e["nbytes"]
        if not isinstance(name, str) or name in names:
            raise WireError(f"{where}: name must be a unique str, got {name!r:.80}")
        where = f"header entry {i} ({_q(name)[:80]})"
        if not isinstance(kind, str) or kind not in _KIND_DTYPES:
            raise WireError(f"{where}: unsupported kind {kind!r:.40}")
        if not isinstance(dt, str) or dt not in _KIND_DTYPES[kind]:
            raise WireError(f"{where}: dtype {dt!r:.40} is not allowed for kind {kind}")
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
        out.append((name, kind, dt, tuple(shape), off, n))
        end = off + n
    return head, out, end


def _check_mode(bfloat16: str) -> str:
    if bfloat16 not in ("uint16", "float32", "ml_dtypes"):
        raise ValueError(f"bfloat16 must be 'uint16', 'float32' or 'ml_dtypes', got {bfloat16!r}")
    if bfloat16 == "ml_dtypes":
        import ml_dtypes  # noqa: F401  (fails early and clearly when absent)
    return bfloat16


def _check_to(to: str) -> str:
    if to not in ("auto", "numpy", "torch"):
        raise ValueError(f"to must be 'auto', 'numpy' or 'torch', got {to!r}")
    if to == "torch":
        torch_support.load(required=True, why="to='torch'")  # fails early and clearly
    return to


def bfloat16_from_bits(bits: np.ndarray, mode: str) -> np.ndarray:
    """bfloat16 values held as uint16 bits, as `mode` asks: "uint16" (the bits themselves),
    "float32" (exact widening) or "ml_dtypes" (a view as ml_dtypes.bfloat16)."""
    if mode == "uint16":
        return bits
    if mode == "float32":
        wide = bits.astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    import ml_dtypes
    return bits.view(ml_dtypes.bfloat16)


def _outputs(entries: list[_Entry], arrays: dict[str, np.ndarray], to: str,
             bfloat16: str) -> dict[str, Any]:
    """The decoded values: numpy arrays, or CPU tensors for the kinds that `to` sends to torch."""
    as_torch = {"numpy": (), "auto": ("torch",), "torch": ("numpy", "torch")}[to]
    if to == "auto" and any(e[1] == "torch" for e in entries) and torch_support.load() is None:
        as_torch = ()  # no torch here: its entries come back as numpy arrays
    out: dict[str, Any] = {}
    for name, kind, dt, *_ in entries:
        arr = arrays[name]
        if not arr.dtype.isnative:  # big-endian host
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if kind not in as_torch:
            out[name] = bfloat16_from_bits(arr, bfloat16) if dt == "bfloat16" else arr
            continue
        try:  # shares the array when it is a writeable copy, else copies: never the wire buffer
            out[name] = torch_support.from_numpy(arr, dt)
        except TypeError as e:  # e.g. uint32 with a torch older than 2.3
            raise WireError(f"entry {_q(name)}: {dt} cannot become a torch tensor ({e})") from None
    return out


def _model_from(head: dict[str, Any], params: dict[str, Any] | None) -> FLModel:
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
    meta = m.get("meta") or {}
    if params is not None and head.get("arrays"):
        found = {name: params.pop(name) for name in [n for n in params if n.startswith(META_ARRAY)]}
        meta = _with_arrays(meta, found)
    if head.get("params") is None:
        params = None
    return FLModel(params=params, params_type=None if pt is None else ParamsType(pt),
                   metrics=m.get("metrics"), meta=meta,
                   current_round=m.get("current_round", defaults.current_round),
                   total_rounds=m.get("total_rounds", defaults.total_rounds),
                   start_round=m.get("start_round", defaults.start_round),
                   optimizer_params=m.get("optimizer_params"))


def _with_arrays(value: Any, found: dict[str, Any], depth: int = 0) -> Any:
    """`value` with each {ARRAY_KEY: k} replaced by the k-th array of the stream."""
    if depth > 100:
        raise WireError("header model.meta: nested too deeply")
    if isinstance(value, dict):
        if set(value) == {ARRAY_KEY}:
            key = f"{META_ARRAY}{value[ARRAY_KEY]}" if _is_int(value[ARRAY_KEY]) else None
            if key not in found:
                raise WireError(f"header model.meta: no array {value[ARRAY_KEY]!r:.40} in the stream")
            return found[key]
        return {k: _with_arrays(v, found, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_arrays(v, found, depth + 1) for v in value]
    return value


def _decode(data: Buffer, copy: bool, bfloat16: str, to: str) -> tuple[dict, dict | None]:
    _check_mode(bfloat16)
    _check_to(to)
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
    arrays = {}
    for name, _, dt, shape, off, n in entries:
        try:
            arr = np.frombuffer(body[off:off + n], dtype=_WIRE_DTYPES[dt]).reshape(shape)
        except (ValueError, MemoryError) as e:
            raise WireError(f"entry {_q(name)}: {e}") from None
        if copy:
            arr = arr.copy()
        else:
            arr.flags.writeable = False
        arrays[name] = arr
    return head, _outputs(entries, arrays, to, bfloat16)


def decode_params(data: Buffer, copy: bool = True, bfloat16: BFloat16Mode = "uint16",
                  to: DecodeTarget = "auto") -> dict[str, Any]:
    """Params from an encoded stream.

    to: "auto" gives torch tensors for entries sent as tensors when torch can be imported, numpy
    arrays otherwise; "numpy" gives numpy arrays for all; "torch" gives CPU tensors for all
    (ImportError without torch).
    Numpy arrays are writeable copies, or read-only zero-copy views if not copy; tensors always
    own their memory (a copy when copy=False, as torch has no read-only tensors).
    bfloat16 says how numpy arrays hold bfloat16 entries: "uint16" raw bits (default; do not do
    arithmetic on them), "float32" (exact widening) or "ml_dtypes" (ml_dtypes.bfloat16; needs
    that package). Tensors are torch.bfloat16, bit for bit.
    """
    head, params = _decode(data, copy, bfloat16, to)
    if head.get("params") is None:
        raise WireError("the stream holds an FLModel with params=None; use decode_model")
    return {k: v for k, v in params.items() if not k.startswith(META_ARRAY)}


def decode_model(data: Buffer, copy: bool = True, bfloat16: BFloat16Mode = "uint16",
                 to: DecodeTarget = "auto") -> FLModel:
    """The FLModel from `encode_model` (a plain params stream gives FLModel defaults); the
    arguments are those of `decode_params`."""
    return _model_from(*_decode(data, copy, bfloat16, to))
