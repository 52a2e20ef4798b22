"""Tests for runtime.wire: the params / FLModel wire codec."""

from __future__ import annotations

import ast
import json
import math
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.model import FLModel, ParamsType
from runtime.wire import (
    MAGIC,
    MAX_ENTRIES,
    MAX_HEADER_BYTES,
    ModelAssembler,
    ParamsAssembler,
    WireError,
    decode_model,
    decode_params,
    encode_model,
    encode_params,
    encoded_size,
    iter_chunks,
    iter_model_chunks,
)
from runtime.wire import codec

NUMERIC = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "complex64", "complex128"]


def _random(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    n = math.prod(shape) * np.dtype(dtype).itemsize
    # random bits: covers NaN payloads, infs, subnormals and negative zero for float types
    return np.frombuffer(rng.bytes(n), dtype=dtype).reshape(shape).copy()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality with the same (native) dtype and shape."""
    return (a.shape == b.shape and a.dtype.newbyteorder("=") == b.dtype
            and np.ascontiguousarray(a, dtype=b.dtype).tobytes() == b.tobytes())


def _assemble(chunks, cls=ParamsAssembler, **kw):
    asm = cls(**kw)
    for c in chunks:
        asm.feed(c)
    return asm.result()


def _split_randomly(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        k = rng.randint(1, max_piece)
        out.append(data[i:i + k])
        i += k
    return out


def _roundtrip_all_ways(params: dict) -> None:
    blob = encode_params(params)
    assert len(blob) == encoded_size(params)
    assert b"".join(iter_chunks(params, 97)) == blob
    for got in (decode_params(blob), decode_params(blob, copy=False),
                _assemble(iter_chunks(params, 97))):
        assert list(got) == list(params)
        for k in params:
            assert _same(np.asarray(params[k]), got[k]), k


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4)])
def test_every_numeric_dtype_roundtrips_bit_exact(dtype: str, shape: tuple[int, ...]) -> None:
    _roundtrip_all_ways({"w": _random(dtype, shape)})


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 0), ()])
def test_empty_and_zero_dim_arrays(shape: tuple[int, ...]) -> None:
    params = {"a": np.zeros(shape, np.float32), "b": np.ones(shape, np.int64), "c": np.arange(3.0)}
    _roundtrip_all_ways(params)
    assert decode_params(encode_params(params))["a"].shape == shape


def test_non_contiguous_and_fortran_arrays() -> None:
    base = np.arange(120, dtype=np.float64).reshape(10, 12)
    params = {
        "stepped": base[::3, 1::2],
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
        "reversed": base[::-1, ::-1],
        "column": base[:, 5],
        "complex_t": (base + 1j * base).astype(np.complex64).T[::2],
    }
    assert not params["stepped"].flags.c_contiguous
    _roundtrip_all_ways(params)
    got = decode_params(encode_params(params))
    assert np.array_equal(got["fortran"], base) and got["transposed"].shape == (12, 10)


@pytest.mark.parametrize("dtype", [">f8", ">i2", ">c16", ">u4", ">f2"])
def test_big_endian_input_comes_back_native(dtype: str) -> None:
    a = np.arange(-6, 6).reshape(3, 4).astype(dtype)
    got = decode_params(encode_params({"x": a}))["x"]
    assert got.dtype.isnative and got.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(got, a)


def test_python_scalars_and_lists_are_accepted_when_numeric() -> None:
    got = decode_params(encode_params({"i": 3, "f": 2.5, "b": True, "l": [[1, 2], [3, 4]],
                                       "np": np.float32(1.5)}))
    assert got["i"].shape == () and got["i"] == 3
    assert got["f"] == 2.5 and got["b"].dtype == bool and got["np"].dtype == np.float32
    assert np.array_equal(got["l"], [[1, 2], [3, 4]])


def test_many_small_arrays_and_order_preserved() -> None:
    params = {f"layer{i}.w": _random(NUMERIC[i % len(NUMERIC)], (i % 4,), seed=i)
              for i in range(1000)}
    _roundtrip_all_ways(params)
    chunks = list(iter_chunks(params, 4096))
    assert all(len(c) <= 4096 for c in chunks) and all(len(c) == 4096 for c in chunks[:-1])


def test_large_array_crosses_chunk_boundaries() -> None:
    params = {"big": _random("float32", (1000, 37)), "small": np.arange(5), "t": _random(
        "float64", (50, 40)).T}
    chunks = list(iter_chunks(params, chunk_size=1000))
    assert all(isinstance(c, bytes) and 0 < len(c) <= 1000 for c in chunks)
    assert all(len(c) == 1000 for c in chunks[:-1])
    assert b"".join(chunks) == encode_params(params)
    got = _assemble(chunks)
    assert all(_same(params[k], got[k]) for k in params)


@pytest.mark.parametrize("seed", range(8))
def test_assembler_with_random_chunk_splits(seed: int) -> None:
    rng = random.Random(seed)
    params = {"a": _random("float16", (33, 7), seed), "b": np.zeros((0, 3)),
              "c": _random("int64", (), seed), "d": _random("complex128", (17,), seed)}
    blob = encode_params(params)
    pieces = _split_randomly(blob, rng, max_piece=rng.choice([1, 5, 64, 300, 5000]))
    kinds = [bytes, bytearray, memoryview]
    got = _assemble(rng.choice(kinds)(p) for p in pieces)
    assert list(got) == list(params) and all(_same(params[k], got[k]) for k in params)
    assert all(v.flags.writeable for v in got.values())


def test_copy_semantics() -> None:
    blob = encode_params({"x": np.arange(4.0)})
    views = decode_params(blob, copy=False)
    assert not views["x"].flags.writeable
    with pytest.raises(ValueError):
        views["x"][0] = 9
    buf = bytearray(blob)
    copies = decode_params(buf)
    copies["x"][0] = 9
    assert decode_params(buf)["x"][0] == 0  # independent of the input buffer
    assert not decode_params(buf, copy=False)["x"].flags.writeable


def test_empty_params_dict() -> None:
    assert decode_params(encode_params({})) == {}
    assert _assemble(iter_chunks({})) == {}


def test_stream_is_little_endian_and_aligned() -> None:
    blob = encode_params({"a": np.array([1], np.uint8), "b": np.array([1], ">u4")})
    size = struct.unpack("<I", blob[4:8])[0]
    assert blob[:4] == MAGIC and (8 + size) % codec.ALIGN == 0
    head = json.loads(blob[8:8 + size])
    b = head["params"][1]
    assert b["kind"] == "numpy" and b["offset"] % codec.ALIGN == 0
    assert blob[8 + size + b["offset"]:][:4] == b"\x01\x00\x00\x00"


# ---------------------------------------------------------------- bfloat16


def _craft(head: dict | list | str, data: bytes = b"", raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(head).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + data


def _entry(name: str, dtype: str, shape: list, offset: int = 0, nbytes: int | None = None) -> dict:
    if nbytes is None:
        nbytes = math.prod(shape) * codec._WIRE_DTYPES.get(dtype, np.dtype("u1")).itemsize
    return {"name": name, "kind": "numpy", "dtype": dtype, "shape": shape, "offset": offset,
            "nbytes": nbytes}


BF16_BITS = np.array([0x3F80, 0xC000, 0x7F80, 0x0000, 0x3E20], dtype="<u2")  # 1, -2, inf, 0, .15625


def _bf16_stream() -> bytes:
    return _craft({"version": 1, "params": [_entry("h", "bfloat16", [5])]}, BF16_BITS.tobytes())


def test_bfloat16_entries_decode_as_uint16_bits_or_float32() -> None:
    got = decode_params(_bf16_stream())["h"]
    assert got.dtype == np.uint16 and np.array_equal(got, BF16_BITS)
    asm = ParamsAssembler(bfloat16="float32")
    for b in _bf16_stream():
        asm.feed(bytes([b]))
    f32 = asm.result()["h"]
    assert f32.dtype == np.float32 and f32.tolist() == [1.0, -2.0, math.inf, 0.0, 0.15625]
    assert decode_params(_bf16_stream(), bfloat16="float32")["h"].tolist() == f32.tolist()
    with pytest.raises(ValueError, match="bfloat16 must be"):
        decode_params(_bf16_stream(), bfloat16="half")  # type: ignore[arg-type]


def test_bfloat16_with_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    got = decode_params(_bf16_stream(), bfloat16="ml_dtypes")["h"]
    assert got.dtype == ml_dtypes.bfloat16 and got.astype(np.float32)[0] == 1.0
    blob = encode_params({"h": got})
    assert json.loads(blob[8:8 + struct.unpack("<I", blob[4:8])[0]])["params"][0]["dtype"] == \
        "bfloat16"
    assert np.array_equal(decode_params(blob)["h"], BF16_BITS)


# ---------------------------------------------------------------- FLModel envelope


def test_flmodel_roundtrip_with_nan_metrics_and_none_vs_empty_params() -> None:
    model = FLModel(
        params={"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(0.5)},
        params_type=ParamsType.DIFF,
        metrics={"loss": math.nan, "acc": np.float32(0.75), "best": math.inf, "n": np.int64(3)},
        meta={"site_name": "site-1", "NUM_STEPS_CURRENT_ROUND": 10, "nested": {"a": [1, (2, 3)]}},
        current_round=2, total_rounds=5, start_round=1, optimizer_params={"lr": 0.01})
    for got in (decode_model(encode_model(model)),
                _assemble(iter_model_chunks(model, 50), ModelAssembler)):
        assert got.params_type is ParamsType.DIFF
        assert math.isnan(got.metrics["loss"]) and got.metrics["best"] == math.inf
        assert got.metrics["acc"] == 0.75 and got.metrics["n"] == 3
        assert got.meta == {"site_name": "site-1", "NUM_STEPS_CURRENT_ROUND": 10,
                            "nested": {"a": [1, [2, 3]]}}
        assert (got.current_round, got.total_rounds, got.start_round) == (2, 5, 1)
        assert got.optimizer_params == {"lr": 0.01}
        assert np.array_equal(got.params["w"], model.params["w"]) and got.params["b"] == 0.5

    none = FLModel(params=None, params_type=None, metrics=None, start_round=None)
    for got in (decode_model(encode_model(none)),
                _assemble(iter_model_chunks(none, 3), ModelAssembler)):
        assert got.params is None and got.params_type is None and got.metrics is None
        assert got.start_round is None and got.meta == {}
    empty = decode_model(encode_model(FLModel(params={})))
    assert empty.params == {} and empty.params_type is ParamsType.FULL
    with pytest.raises(WireError, match="params=None; use decode_model"):
        decode_params(encode_model(none))
    with pytest.raises(WireError, match="use ModelAssembler"):
        _assemble(iter_model_chunks(none), ParamsAssembler)


def test_plain_params_stream_decodes_as_default_flmodel() -> None:
    got = decode_model(encode_params({"x": np.ones(2)}))
    assert got.params_type is ParamsType.FULL and got.start_round == 0 and got.meta == {}
    assert np.array_equal(got.params["x"], np.ones(2))
    assert np.array_equal(decode_params(encode_model(FLModel(params={"x": np.ones(2)})))["x"],
                          np.ones(2))


@pytest.mark.parametrize("model, message", [
    (FLModel(meta={"x": {1, 2}}), 'FLModel.meta["x"]: value of type set is not JSON-compatible'),
    (FLModel(metrics={"a": [1, object()]}), 'FLModel.metrics["a"][1]: value of type object'),
    (FLModel(meta={"x": {3: "y"}}), 'FLModel.meta["x"]: key 3 of type int is not a str'),
    (FLModel(optimizer_params={"b": b"raw"}), 'FLModel.optimizer_params["b"]: value of type bytes'),
    (FLModel(current_round=1.5), "FLModel.current_round: expected an int or None"),  # type: ignore
    (FLModel(params={"w": np.array(["a"])}), 'params["w"]: dtype <U1 cannot be sent'),
])
def test_flmodel_non_json_fields_are_rejected(model: FLModel, message: str) -> None:
    with pytest.raises(WireError) as e:
        encode_model(model)
    assert message in str(e.value)


# ---------------------------------------------------------------- encode-side validation


@pytest.mark.parametrize("value, message", [
    (np.array([object()], dtype=object), "dtype object cannot be sent; use numeric arrays"),
    (np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]), "cannot be sent"),
    (np.array(["abc"]), "dtype <U3 cannot be sent"),
    (np.array([b"abc"]), "dtype |S3 cannot be sent"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), "dtype datetime64[D] cannot be sent"),
    (np.array([1], dtype="timedelta64[s]"), "dtype timedelta64[s] cannot be sent"),
    (np.zeros(2, dtype=np.longdouble), "cannot be sent"),
    ("hello", 'params["w"]: dtype <U5 cannot be sent'),
    (None, 'params["w"]: dtype object cannot be sent'),
    ([[1, 2], [3]], 'params["w"]'),
    (2**80, "dtype object cannot be sent"),
])
def test_unsendable_values_raise_wire_error(value, message: str) -> None:
    if np.dtype(np.longdouble).itemsize == 8 and getattr(value, "dtype", None) == np.longdouble:
        pytest.skip("longdouble is float64 on this platform")
    for fn in (encode_params, encoded_size, lambda p: list(iter_chunks(p))):
        with pytest.raises(WireError) as e:
            fn({"w": value})
        assert message in str(e.value) and 'params["w"]' in str(e.value)


def test_non_str_keys_and_non_dict_params() -> None:
    with pytest.raises(WireError, match="key 1 of type int is not a str"):
        encode_params({1: np.zeros(1)})
    with pytest.raises(WireError, match="expected a dict of arrays, got list"):
        encode_params([np.zeros(1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        list(iter_chunks({}, 0))


# ---------------------------------------------------------------- malformed input

GOOD = encode_params({"w": np.arange(10, dtype=np.float32), "b": np.arange(3, dtype=np.int8)})
V = {"version": 1}


MALFORMED = [
    (b"", "truncated stream: 0 bytes"),
    (b"FLP", "truncated stream: 3 bytes"),
    (b"PK\x03\x04" + GOOD[4:], "bad magic"),
    (b"FLP2" + GOOD[4:], "unsupported wire version"),
    (MAGIC + struct.pack("<I", MAX_HEADER_BYTES + 1) + b"{}", "exceeds the limit"),
    (MAGIC + struct.pack("<I", 4096) + b"{}", "header length 4096 is larger than the data"),
    (_craft(None, raw=b"\x80\x81garbage"), "header is not valid UTF-8 JSON"),
    (_craft(None, raw=b"{not json"), "header is not valid UTF-8 JSON"),
    (_craft(None, raw=b"[" * 200_000), "header is not valid UTF-8 JSON"),
    (_craft([1, 2]), "not a params stream header"),
    (_craft({"version": 2, "params": []}), "unsupported header version 2"),
    (_craft({**V, "params": {"w": 1}}), "'params' must be a list"),
    (_craft({**V, "params": [0] * (MAX_ENTRIES + 1)}), "more than the limit of"),
    (_craft({**V, "params": [{"name": "w"}]}), "expected an object with keys"),
    (_craft({**V, "params": [_entry("w", "uint8", [1]), _entry("w", "uint8", [1], 64)]}, bytes(65)),
     "name must be a unique str"),
    (_craft({**V, "params": [{**_entry("w", "uint8", [1]), "kind": "jax"}]}, b"\0"),
     'header entry 0 ("w"): unsupported kind'),
    (_craft({**V, "params": [_entry("w", "object", [1], nbytes=8)]}, bytes(8)),
     "dtype 'object' is not allowed"),
    (_craft({**V, "params": [_entry("w", "float32", [2, -1], nbytes=0)]}), "bad shape"),
    (_craft({**V, "params": [_entry("w", "float32", [True], nbytes=4)]}, bytes(4)), "bad shape"),
    (_craft({**V, "params": [_entry("w", "float32", [2.0], nbytes=8)]}, bytes(8)), "bad shape"),
    (_craft({**V, "params": [_entry("w", "float32", [3], nbytes=8)]}, bytes(8)),
     "needs 12 bytes, header says 8"),
    (_craft({**V, "params": [_entry("w", "int8", [1], offset=-1)]}, b"\0"),
     "offset and nbytes must be non-negative"),
    (_craft({**V, "params": [_entry("a", "int8", [100]), _entry("b", "int8", [8], offset=50)]},
            bytes(200)), "offset 50 overlaps the previous entry"),
    (_craft({**V, "params": [_entry("a", "int8", [1]), _entry("b", "int8", [8], offset=10**6)]},
            bytes(200)), "leaves a gap"),
    (_craft({**V, "params": [_entry("w", "float64", [2**40])]}, bytes(64)),
     "truncated stream: data region has 64 bytes"),
    (GOOD[:-1], "truncated stream: data region"),
    (GOOD + b"\0", "1 trailing bytes"),
    (_craft({**V, "params": [_entry("w", "int8", [2**61, 0, 2**61])]}), "entry \"w\""),
]


@pytest.mark.parametrize("data, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_streams_raise_wire_error(data: bytes, message: str) -> None:
    with pytest.raises(WireError) as e:
        decode_params(data)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)
    # the assembler reports the same problem (or a truncation) chunk by chunk
    asm = ParamsAssembler()
    with pytest.raises(WireError):
        for i in range(0, len(data), 1000):
            asm.feed(data[i:i + 1000])
        asm.result()


def test_malformed_model_section() -> None:
    for model, message in [({"params_type": "HALF"}, "expected FULL, DIFF or null"),
                           ({"meta": [1]}, "model.meta: expected an object"),
                           ({"current_round": "1"}, "model.current_round: expected an int"),
                           ({"surprise": 1}, "must be an object with FLModel's fields")]:
        with pytest.raises(WireError, match=message):
            decode_model(_craft({**V, "params": None, "model": model}))


def test_assembler_errors() -> None:
    asm = ParamsAssembler()
    asm.feed(GOOD)
    with pytest.raises(WireError, match="too many bytes"):
        asm.feed(b"x")
    asm = ParamsAssembler()
    asm.feed(GOOD[:-3])
    with pytest.raises(WireError, match="truncated stream: received"):
        asm.result()
    asm = ParamsAssembler()
    asm.feed(GOOD[:20])
    with pytest.raises(WireError, match="header incomplete after 20 bytes"):
        asm.result()
    with pytest.raises(WireError, match="more than max_bytes=100"):
        ParamsAssembler(max_bytes=100).feed(GOOD)
    huge = _craft({**V, "params": [_entry("w", "float64", [2**45])]})
    with pytest.raises(WireError, match="more than max_bytes"):
        ParamsAssembler(max_bytes=2**30).feed(huge)
    assert _assemble([GOOD], max_bytes=len(GOOD))["w"].tolist() == list(range(10))


def test_fuzzed_streams_only_raise_wire_error() -> None:
    rng = random.Random(1234)
    blob = encode_model(FLModel(params={"w": np.arange(20.0).reshape(4, 5), "e": np.zeros(0)},
                                metrics={"loss": 0.5}, meta={"k": "v"}))
    cases = [blob[:i] for i in range(0, len(blob), 7)]
    for _ in range(300):
        b = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    for data in cases:
        for fn in (decode_model,
                   lambda d: _assemble(_split_randomly(d, rng, 50), ModelAssembler)):
            try:
                fn(data)
            except WireError:
                pass


# ---------------------------------------------------------------- hygiene


def test_module_source_has_no_pickle_and_torch_stays_optional() -> None:
    for path in Path(codec.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom)}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not {"pickle", "cPickle", "dill", "cloudpickle", "marshal"} & (imported | names)
        assert "torch" not in imported
    code = "import sys, runtime.wire; assert 'torch' not in sys.modules"
    root = Path(codec.__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_streaming_memory_stays_near_one_model() -> None:
    import tracemalloc

    params = {"a": np.ones(2_000_000, np.float32), "b": np.ones((1000, 1000), np.float16)}
    model_bytes, chunk = 10_000_000, 256 * 1024
    tracemalloc.start()
    try:
        assert sum(len(c) for c in iter_chunks(params, chunk)) == encoded_size(params)
        assert tracemalloc.get_traced_memory()[1] < 4 * chunk  # never the whole blob
        tracemalloc.reset_peak()
        got = _assemble(iter_chunks(params, chunk))
        assert tracemalloc.get_traced_memory()[1] < model_bytes + 4 * chunk
    finally:
        tracemalloc.stop()
    assert got["a"].sum() == 2_000_000 and got["b"].dtype == np.float16


def test_ml_dtypes_mode_needs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # as if it were not installed
    with pytest.raises(ImportError):
        decode_params(_bf16_stream(), bfloat16="ml_dtypes")


# ---- arrays in a model's meta (control variates and the like) ----------------------------------

def test_arrays_in_meta_travel_as_buffers_whole_or_chunked():
    from runtime.wire import ModelAssembler, decode_model, encode_model, iter_model_chunks

    c = {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "b": np.array([1, 2], dtype=np.int32)}
    m = FLModel(params={"w": np.ones((2, 3), dtype=np.float32)},
                meta={"scaffold_c_global": c, "steps": [3, np.float32(2.5)], "mu": 0.1})
    for got in (decode_model(encode_model(m)), _assembled(m)):
        assert set(got.params) == {"w"} and got.meta["mu"] == 0.1 and got.meta["steps"] == [3, 2.5]
        for k, v in c.items():
            assert got.meta["scaffold_c_global"][k].dtype == v.dtype
            np.testing.assert_array_equal(got.meta["scaffold_c_global"][k], v)
    bare = FLModel(params=None, meta={"c": np.ones(3)})
    for got in (decode_model(encode_model(bare)), _assembled(bare)):
        assert got.params is None
        np.testing.assert_array_equal(got.meta["c"], np.ones(3))


def _assembled(m: FLModel) -> FLModel:
    from runtime.wire import ModelAssembler, iter_model_chunks

    asm = ModelAssembler()
    for chunk in iter_model_chunks(m, chunk_size=7):
        asm.feed(chunk)
    return asm.result()


def test_meta_arrays_never_pass_for_params_and_the_reserved_names_are_refused():
    from runtime.wire import decode_params, encode_model

    m = FLModel(params={"w": np.ones(2)}, meta={"c": np.zeros(4)})
    assert set(decode_params(encode_model(m))) == {"w"}
    with pytest.raises(WireError, match="reserved character"):
        encode_model(FLModel(params={"\x00bad": np.ones(2)}))
    with pytest.raises(WireError, match="reserved"):
        encode_model(FLModel(params={}, meta={"__flp_array__": 0}))
    with pytest.raises(WireError, match="not JSON-compatible"):
        encode_model(FLModel(params={}, metrics={"m": np.ones(2)}))  # metrics stay JSON


def test_a_hostile_header_cannot_point_meta_at_arrays_it_does_not_hold():
    import json as _json
    import struct as _struct

    from runtime.wire import decode_model, encode_model
    from runtime.wire.codec import MAGIC, PREFIX_SIZE

    raw = encode_model(FLModel(params={"w": np.ones(2)}, meta={"c": np.zeros(2)}))
    (size,) = _struct.unpack("<I", raw[4:PREFIX_SIZE])
    head = _json.loads(raw[PREFIX_SIZE:PREFIX_SIZE + size])

    def with_head(h: dict) -> bytes:
        text = _json.dumps(h).encode()
        pad = (-(PREFIX_SIZE + len(text))) % 64
        return MAGIC + _struct.pack("<I", len(text) + pad) + text + b" " * pad + raw[PREFIX_SIZE + size:]

    bad = dict(head, model={**head["model"], "meta": {"c": {"__flp_array__": 5}}})
    with pytest.raises(WireError, match="no array 5"):
        decode_model(with_head(bad))
    renamed = dict(head, arrays=[dict(head["arrays"][0], name="w2")])
    with pytest.raises(WireError, match="expected the name"):
        decode_model(with_head(renamed))
    sneaky = dict(head, params=[dict(head["params"][0], name="\x000")], arrays=[])
    with pytest.raises(WireError, match="reserved character"):
        decode_model(with_head(sneaky))
