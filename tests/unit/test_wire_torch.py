"""Tests for torch tensors in runtime.wire: "torch" entries, decode targets, convert helpers."""

from __future__ import annotations

import json
import math
import random
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from runtime.model import FLModel, ParamsType  # noqa: E402
from runtime.wire import (  # noqa: E402
    MAGIC,
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
    params_format,
    params_to_numpy,
    params_to_torch,
)
from runtime.wire import codec  # noqa: E402

TORCH_DTYPES = ["float32", "bfloat16", "float16", "int64", "bool", "uint8", "int8", "int16",
                "int32", "float64", "complex64", "complex128"]
_INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _rand(dtype: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random bits (NaN payloads, infs, subnormals, -0 for floats); 0/1 for bool."""
    rng = np.random.default_rng(seed)
    dt = getattr(torch, dtype)
    if dt is torch.bool:
        return torch.from_numpy(rng.integers(0, 2, size=shape).astype(bool))
    n = math.prod(shape)
    if n == 0:
        return torch.empty(shape, dtype=dt)
    size = torch.empty((), dtype=dt).element_size()
    raw = np.frombuffer(rng.bytes(n * size), np.uint8).copy()
    return torch.from_numpy(raw).view(dt).reshape(shape)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """t's raw bits as an integer tensor, so NaN payloads compare too."""
    t = t.detach().cpu().resolve_conj().resolve_neg()
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype is torch.bool:
        return t.view(torch.uint8)
    return t.view(_INT_VIEW[t.element_size()]) if t.is_floating_point() else t


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
            and b.device.type == "cpu" and torch.equal(_bits(a), _bits(b)))


def _assemble(chunks, cls=ParamsAssembler, **kw):
    asm = cls(**kw)
    for c in chunks:
        asm.feed(c)
    return asm.result()


def _header(blob: bytes) -> dict:
    return json.loads(blob[8:8 + struct.unpack("<I", blob[4:8])[0]])


def _roundtrip_all_ways(params: dict[str, torch.Tensor], chunk: int = 61) -> None:
    blob = encode_params(params)
    assert len(blob) == encoded_size(params)
    assert b"".join(iter_chunks(params, chunk)) == blob
    for got in (decode_params(blob), decode_params(blob, copy=False),
                decode_params(blob, to="torch"), _assemble(iter_chunks(params, chunk)),
                _assemble(iter_chunks(params, chunk), to="torch")):
        assert list(got) == list(params)
        for k, v in params.items():
            assert _same(v, got[k]), k


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 0, 4)])
def test_every_torch_dtype_roundtrips_bit_exact(dtype: str, shape: tuple[int, ...]) -> None:
    t = _rand(dtype, shape)
    _roundtrip_all_ways({"w": t})
    (entry,) = _header(encode_params({"w": t}))["params"]
    assert (entry["kind"], entry["dtype"], entry["shape"]) == ("torch", dtype, list(shape))


NAN_BITS = {  # quiet/signalling NaNs with payloads, both signs, next to inf and -0
    "float16": (torch.int16, [0x7C01, 0x7E00, 0x7FFF, -0x0200, -0x0001, 0x7C00, -0x8000]),
    "bfloat16": (torch.int16, [0x7F81, 0x7FC0, 0x7FFF, -0x003F, -0x0001, 0x7F80, -0x8000]),
    "float32": (torch.int32, [0x7F800001, 0x7FC00000, 0x7FFFFFFF, -0x00400001, -1, 0x7F800000]),
    "float64": (torch.int64, [0x7FF0000000000001, 0x7FF8000000000000, 0x7FFFFFFFFFFFFFFF, -1,
                              0x7FF0000000000000, -0x8000000000000000]),
}


@pytest.mark.parametrize("dtype", sorted(NAN_BITS))
def test_nan_payloads_survive(dtype: str) -> None:
    ints, pattern = NAN_BITS[dtype]
    t = torch.tensor(pattern, dtype=ints).view(getattr(torch, dtype))
    c = torch.complex(t.float(), t.float()) if dtype != "float64" else torch.complex(t, t)
    _roundtrip_all_ways({"t": t, "c": c})
    assert torch.equal(decode_params(encode_params({"t": t}))["t"].view(ints),
                       torch.tensor(pattern, dtype=ints))


def test_bfloat16_every_bit_pattern_is_exact_in_every_target() -> None:
    bits = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16)  # all 65536 patterns
    t = bits.view(torch.bfloat16).reshape(256, 256)
    blob = encode_params({"h": t})
    (entry,) = _header(blob)["params"]
    assert entry["nbytes"] == 2 * 65536 and len(blob) % 64 == 0  # 2 bytes each: no float32
    _roundtrip_all_ways({"h": t}, chunk=4099)
    u16 = decode_params(blob, to="numpy")["h"]
    assert u16.dtype == np.uint16 and np.array_equal(u16.view(np.int16), bits.reshape(256, 256))
    f32 = decode_params(blob, to="numpy", bfloat16="float32")["h"]
    assert f32.dtype == np.float32
    wide = f32.view(np.uint32)
    assert np.array_equal(wide >> 16, u16) and not (wide & 0xFFFF).any()
    finite = ~t.isnan()
    assert torch.equal(torch.from_numpy(f32)[finite], t.float()[finite])  # the same values
    ml = decode_params(blob, to="numpy", bfloat16="ml_dtypes")["h"]
    assert ml.dtype.name == "bfloat16" and np.array_equal(ml.view(np.uint16), u16)


@pytest.mark.parametrize("seed", range(4))
def test_bfloat16_random_bits_non_contiguous_and_streamed(seed: int) -> None:
    base = _rand("bfloat16", (40, 30), seed)
    params = {"t": base.t(), "step": base[::3, 1::4], "col": base[:, 7], "full": base}
    assert not params["t"].is_contiguous()
    _roundtrip_all_ways(params, chunk=random.Random(seed).choice([1, 7, 64, 1000]))


def test_non_contiguous_views_and_requires_grad() -> None:
    base = torch.arange(120, dtype=torch.float64).reshape(10, 12)
    leaf = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(2, 3, dtype=torch.complex64)
    params = {
        "transposed": base.t(),
        "stepped": base[::3, 1::2],
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "channels_last": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "permuted": torch.randn(2, 3, 4).permute(2, 0, 1),
        "leaf": leaf,
        "nonleaf": leaf * 2,
        "parameter": torch.nn.Parameter(torch.randn(5)),
        "conj": z.conj(),  # lazy conjugate bit
        "neg": z.conj().imag,  # lazy negative bit
    }
    assert params["expanded"].stride() == (0, 1) and params["conj"].is_conj()
    _roundtrip_all_ways(params)
    got = decode_params(encode_params(params))
    assert torch.equal(got["conj"], z.conj().resolve_conj())
    assert torch.equal(got["neg"], -z.imag)
    assert torch.equal(got["expanded"], torch.arange(3.0).repeat(4, 1))
    assert all(not v.requires_grad and v.is_leaf for v in got.values())
    assert type(got["parameter"]) is torch.Tensor
    assert leaf.requires_grad and leaf.grad is None  # the input is untouched


def test_state_dict_of_linear_batchnorm_roundtrips() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model(torch.randn(8, 4))  # training step: running stats and num_batches_tracked move
    state = model.state_dict()
    assert state["1.num_batches_tracked"].dtype is torch.int64
    _roundtrip_all_ways(dict(state), chunk=32)
    got = decode_params(encode_params(dict(state)))
    assert list(got) == list(state) and int(got["1.num_batches_tracked"]) == 1
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    fresh.load_state_dict(got)
    x = torch.randn(5, 4)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    as_np = decode_params(encode_params(dict(state)), to="numpy")
    assert as_np["1.num_batches_tracked"].dtype == np.int64
    assert as_np["0.weight"].dtype == np.float32

    flm = FLModel(params=dict(state), params_type=ParamsType.DIFF, meta={"k": 1}, current_round=3)
    for out in (decode_model(encode_model(flm)),
                _assemble(iter_model_chunks(flm, 50), ModelAssembler),
                _assemble(iter_model_chunks(flm, 50), ModelAssembler, to="torch")):
        assert out.params_type is ParamsType.DIFF and out.current_round == 3
        assert all(_same(state[k], out.params[k]) for k in state)
    out = _assemble(iter_model_chunks(flm, 50), ModelAssembler, to="numpy")
    assert all(isinstance(v, np.ndarray) for v in out.params.values())
    assert isinstance(decode_model(encode_model(flm), to="numpy").params["0.bias"], np.ndarray)


def test_small_chunks_with_mixed_numpy_and_torch_entries() -> None:
    params = {"big": _rand("float32", (300, 11)), "np": np.arange(50, dtype=np.int16),
              "h": _rand("bfloat16", (77,), 1), "b": torch.tensor([True, False, True]),
              "e": torch.empty(0, 3), "s": torch.tensor(2.5, dtype=torch.float64)}
    blob = encode_params(params)
    kinds = [(e["kind"], e["dtype"]) for e in _header(blob)["params"]]
    assert kinds == [("torch", "float32"), ("numpy", "int16"), ("torch", "bfloat16"),
                     ("torch", "bool"), ("torch", "float32"), ("torch", "float64")]
    assert all(e["offset"] % codec.ALIGN == 0 for e in _header(blob)["params"])
    for size in (1, 13, 64, 1000):
        chunks = list(iter_chunks(params, size))
        assert all(0 < len(c) <= size for c in chunks) and all(len(c) == size for c in chunks[:-1])
        assert b"".join(chunks) == blob
    rng = random.Random(5)
    pieces, i = [], 0
    while i < len(blob):
        k = rng.randint(1, 200)
        pieces.append(blob[i:i + k])
        i += k
    got = _assemble(pieces)
    assert isinstance(got["np"], np.ndarray) and np.array_equal(got["np"], params["np"])
    assert all(_same(params[k], got[k]) for k in params if k != "np")


# ---------------------------------------------------------------- decode targets


def _mixed() -> dict:
    return {"t": _rand("float32", (3, 4)), "h": _rand("bfloat16", (6,), 2),
            "n": np.arange(5, dtype=np.int32), "u": np.arange(4, dtype=np.uint32),
            "nh": np.array([0x3F80, 0xC000], np.uint16).view(
                pytest.importorskip("ml_dtypes").bfloat16)}


@pytest.mark.filterwarnings("error")  # e.g. torch's warning about non-writable numpy arrays
@pytest.mark.parametrize("copy", [True, False])
def test_decode_targets(copy: bool) -> None:
    params = _mixed()
    blob = encode_params(params)
    auto = decode_params(blob, copy=copy)
    assert isinstance(auto["t"], torch.Tensor) and isinstance(auto["h"], torch.Tensor)
    assert isinstance(auto["n"], np.ndarray) and isinstance(auto["nh"], np.ndarray)
    assert auto["nh"].dtype == np.uint16  # a numpy bfloat16 entry follows the bfloat16 mode
    assert _same(params["h"], auto["h"])

    as_np = decode_params(blob, copy=copy, to="numpy", bfloat16="float32")
    assert all(isinstance(v, np.ndarray) for v in as_np.values())
    assert as_np["h"].dtype == np.float32 and as_np["t"].dtype == np.float32
    assert np.array_equal(as_np["t"].view(np.int32), params["t"].view(torch.int32).numpy())
    assert as_np["nh"].tolist() == [1.0, -2.0]

    as_t = decode_params(blob, copy=copy, to="torch")
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in as_t.values())
    assert as_t["n"].dtype is torch.int32 and as_t["u"].dtype is torch.uint32
    assert as_t["nh"].dtype is torch.bfloat16 and as_t["nh"].tolist() == [1.0, -2.0]
    assert as_t["u"].numpy().tolist() == [0, 1, 2, 3]  # few ops exist for torch.uint32
    for v in (*as_t.values(), auto["t"], auto["h"]):
        v.view(torch.uint8).reshape(-1)[:1] = 7  # writable


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("to", ["auto", "torch"])
def test_tensors_own_their_memory(copy: bool, to: str) -> None:
    buf = bytearray(encode_params({"t": torch.arange(8, dtype=torch.int64)}))
    data = 8 + struct.unpack("<I", buf[4:8])[0]  # where t's bytes start
    got = decode_params(buf, copy=copy, to=to)["t"]
    lo = np.frombuffer(buf, np.uint8).ctypes.data
    assert not lo <= got.untyped_storage().data_ptr() < lo + len(buf)
    buf[data:data + 8] = b"\xff" * 8  # the buffer changes: the tensor does not
    assert got.tolist() == list(range(8))
    got[1] = 100  # the tensor changes: the buffer does not
    assert buf[data + 8:data + 16] == (1).to_bytes(8, "little")
    assert decode_params(buf, to=to)["t"].tolist() == [-1, *range(1, 8)]


def test_ml_dtypes_and_big_widths_to_torch_and_bad_targets() -> None:
    blob = encode_params({"u16": np.arange(3, dtype=np.uint16), "c": np.ones(2, np.complex128),
                          "b": np.array([True])})
    got = decode_params(blob, to="torch")
    assert [got[k].dtype for k in got] == [torch.uint16, torch.complex128, torch.bool]
    for bad in ("tensor", None, "TORCH"):
        with pytest.raises(ValueError, match="to must be 'auto', 'numpy' or 'torch'"):
            decode_params(blob, to=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="to must be"):
            ParamsAssembler(to=bad)  # type: ignore[arg-type]


def test_without_torch_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = encode_params({"t": torch.arange(3.0), "h": torch.ones(2, dtype=torch.bfloat16)})
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    got = decode_params(blob)  # auto: numpy
    assert isinstance(got["t"], np.ndarray) and got["t"].tolist() == [0.0, 1.0, 2.0]
    assert got["h"].dtype == np.uint16 and got["h"].tolist() == [0x3F80] * 2
    assert decode_params(blob, bfloat16="float32")["h"].tolist() == [1.0, 1.0]
    assert isinstance(_assemble([blob], ModelAssembler).params["t"], np.ndarray)
    with pytest.raises(ImportError, match="to='torch' needs PyTorch"):
        decode_params(blob, to="torch")
    with pytest.raises(ImportError, match="needs PyTorch"):
        ModelAssembler(to="torch")
    with pytest.raises(ImportError, match="params_to_torch needs PyTorch"):
        params_to_torch({"a": np.ones(1)})


# ---------------------------------------------------------------- errors


UNSENDABLE = [
    (lambda: torch.zeros(2, dtype=torch.float8_e4m3fn), "torch dtype torch.float8_e4m3fn"),
    (lambda: torch.zeros(2, dtype=torch.float8_e5m2), "torch dtype torch.float8_e5m2"),
    (lambda: torch.zeros(2, dtype=torch.complex32), "torch dtype torch.complex32"),
    (lambda: torch.zeros(2, dtype=torch.uint16), "torch dtype torch.uint16"),
    (lambda: torch.zeros(2, dtype=torch.uint64), "torch dtype torch.uint64"),
    (lambda: torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, torch.qint8),
     "torch dtype torch.qint8"),
    (lambda: torch.zeros(2).to_sparse(), "layout torch.sparse_coo cannot be sent"),
    (lambda: torch.zeros(2, device="meta"), "meta device"),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # quantized tensors are deprecated
@pytest.mark.parametrize("make, message", UNSENDABLE, ids=[m for _, m in UNSENDABLE])
def test_unsupported_tensors_raise_wire_error_naming_the_entry(make, message: str) -> None:
    params = {"ok": torch.ones(2), "layer.w": make()}
    for fn in (encode_params, encoded_size, lambda p: list(iter_chunks(p)),
               lambda p: encode_model(FLModel(params=p)), params_to_numpy):
        with pytest.raises(WireError) as e:
            fn(params)
        assert message in str(e.value) and 'params["layer.w"]' in str(e.value)


def _craft_torch_entry(dtype: str, kind: str = "torch") -> bytes:
    head = {"version": 1, "params": [{"name": "w", "kind": kind, "dtype": dtype, "shape": [2],
                                      "offset": 0, "nbytes": 4}]}
    text = json.dumps(head).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + bytes(4)


@pytest.mark.parametrize("dtype, kind, message", [
    ("uint16", "torch", "dtype 'uint16' is not allowed for kind torch"),
    ("float8_e4m3fn", "torch", "dtype 'float8_e4m3fn' is not allowed for kind torch"),
    ("qint8", "torch", "is not allowed"),
    ("int16", "jax", 'header entry 0 ("w"): unsupported kind'),
    ("int16", "Torch", "unsupported kind"),
])
def test_malformed_torch_entries(dtype: str, kind: str, message: str) -> None:
    data = _craft_torch_entry(dtype, kind)
    for fn in (decode_params, lambda d: _assemble([d[:9], d[9:]])):
        with pytest.raises(WireError, match=re.escape(message)):
            fn(data)
    ok = decode_params(_craft_torch_entry("int16"), to="torch")["w"]
    assert ok.dtype is torch.int16 and ok.tolist() == [0, 0]


# ---------------------------------------------------------------- convert helpers


def test_params_format() -> None:
    assert params_format({}) == "empty" and params_format(None) == "empty"
    assert params_format({"a": np.ones(2), "b": 1.5}) == "numpy"
    assert params_format({"a": torch.ones(2), "b": torch.nn.Parameter(torch.ones(1))}) == "torch"
    assert params_format({"a": torch.ones(2), "b": np.ones(1)}) == "mixed"
    with pytest.raises(TypeError, match="expected a dict"):
        params_format([torch.ones(1)])  # type: ignore[arg-type]


def test_params_to_numpy() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    h = _rand("bfloat16", (5, 4), 3)
    grad = torch.randn(3, requires_grad=True)
    kept = np.arange(3)
    params = {"f": torch.arange(6.0).reshape(2, 3).t(), "g": grad, "h": h, "n": kept,
              "i": torch.tensor([1, 2], dtype=torch.int64),
              "c": torch.ones(2, dtype=torch.complex64)}
    out = params_to_numpy(params)
    assert params_format(out) == "numpy" and out["n"] is kept
    assert out["f"].shape == (3, 2) and out["f"].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert out["g"].dtype == np.float32 and out["i"].dtype == np.int64
    assert out["c"].dtype == np.complex64
    bits = h.view(torch.int16).numpy().view(np.uint16)
    assert out["h"].dtype == np.float32 and np.array_equal(out["h"].view(np.uint32) >> 16, bits)
    ml = params_to_numpy(params, bfloat16="ml_dtypes")["h"]
    assert ml.dtype == ml_dtypes.bfloat16 and np.array_equal(ml.view(np.uint16), bits)
    assert params_to_numpy(params, bfloat16="auto")["h"].dtype == ml_dtypes.bfloat16
    assert np.array_equal(params_to_numpy(params, bfloat16="uint16")["h"], bits)
    with pytest.raises(ValueError, match="bfloat16 must be one of"):
        params_to_numpy(params, bfloat16="half")

    shared = params_to_numpy({"i": params["i"]})["i"]
    shared[0] = 10  # like Tensor.numpy(): a view of a CPU tensor
    assert params["i"][0] == 10
    owned = params_to_numpy(params, copy=True)
    owned["i"][0], owned["n"][0], owned["h"][0, 0] = 11, 11, 11
    assert params["i"][0] == 10 and kept[0] == 0 and params_to_numpy({"h": h})["h"][0, 0] != 11
    owned_ml = params_to_numpy({"h": h}, bfloat16="uint16", copy=True)["h"]
    owned_ml[:] = 0
    assert np.array_equal(h.view(torch.int16).numpy().view(np.uint16), bits)


def test_params_to_numpy_without_ml_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    h = {"h": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}
    got = params_to_numpy(h, bfloat16="auto")["h"]  # widened: the only lossless option left
    assert got.dtype == np.float32 and got.tolist() == [1.5, -2.0]
    with pytest.raises(ImportError):
        params_to_numpy(h, bfloat16="ml_dtypes")


@pytest.mark.filterwarnings("error")
def test_params_to_torch() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    ro = np.arange(4.0)
    ro.flags.writeable = False
    t = torch.ones(2, requires_grad=True)
    bf = np.array([0x3F80, 0x7FC1, 0xFF80], np.uint16)
    params = {"a": arr, "ro": ro, "rev": np.arange(5)[::-1], "be": np.arange(3, dtype=">i4"),
              "bf": bf.view(ml_dtypes.bfloat16), "u16": np.arange(3, dtype=np.uint16),
              "scalar": 2.5, "list": [[1, 2], [3, 4]], "np_scalar": np.int8(-3), "t": t,
              "flag": np.array([True, False])}
    out = params_to_torch(params)
    assert params_format(out) == "torch" and out["t"] is t
    out["a"][0, 0] = 9  # shares memory with the numpy array, like torch.from_numpy
    assert arr[0, 0] == 9
    assert out["ro"].tolist() == [0, 1, 2, 3] and out["rev"].tolist() == [4, 3, 2, 1, 0]
    assert out["be"].dtype is torch.int32 and out["be"].tolist() == [0, 1, 2]
    assert out["bf"].dtype is torch.bfloat16
    assert torch.equal(out["bf"].view(torch.int16), torch.from_numpy(bf.view(np.int16)))
    assert out["u16"].dtype is torch.uint16 and out["scalar"].dtype is torch.float64
    assert out["list"].tolist() == [[1, 2], [3, 4]] and out["np_scalar"].item() == -3
    assert out["flag"].dtype is torch.bool

    owned = params_to_torch(params, copy=True)
    owned["a"][0, 0] = -1
    assert arr[0, 0] == 9 and owned["t"] is not t and not owned["t"].requires_grad
    with pytest.raises(WireError, match=r'params\["s"\]: ndarray of dtype <U2 has no torch'):
        params_to_torch({"s": np.array(["ab"])})
    with pytest.raises(WireError, match=r'params\["o"\]'):
        params_to_torch({"o": [object()]})


def test_convert_round_trips_are_bit_exact() -> None:
    pytest.importorskip("ml_dtypes")
    params = {d: _rand(d, (4, 5), i) for i, d in enumerate(TORCH_DTYPES)}
    back = params_to_torch(params_to_numpy(params, bfloat16="ml_dtypes"))
    assert all(_same(params[k], back[k]) for k in params)
    h = params["bfloat16"][~params["bfloat16"].isnan()]  # float32 keeps every value but NaN bits
    wide = params_to_torch(params_to_numpy({"h": h}))["h"]
    assert wide.dtype is torch.float32 and _same(h, wide.to(torch.bfloat16))
    via_wire = params_to_torch(decode_params(encode_params(params), to="numpy",
                                             bfloat16="ml_dtypes"))
    assert all(_same(params[k], via_wire[k]) for k in params)


# ---------------------------------------------------------------- torch stays optional


ROOT = Path(codec.__file__).resolve().parents[2]


def test_numpy_only_use_never_imports_torch() -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import runtime.wire as w
        p = {"a": np.arange(5.0), "b": np.ones((2, 3), np.int8)}
        blob = w.encode_params(p)
        for to in ("auto", "numpy"):
            got = w.decode_params(blob, to=to)
            assert all(np.array_equal(p[k], got[k]) for k in p)
        asm = w.ParamsAssembler()
        for c in w.iter_chunks(p, 7):
            asm.feed(c)
        asm.result()
        assert w.params_format(p) == "numpy" and w.params_to_numpy(p)["a"] is p["a"]
        assert "torch" not in sys.modules, "torch was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_numpy_round_trips_with_torch_hidden(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.flp"
    mixed.write_bytes(encode_params({"t": torch.arange(4, dtype=torch.int16),
                                     "h": torch.tensor([1.0, -2.0], dtype=torch.bfloat16),
                                     "n": np.arange(3.0)}))
    code = textwrap.dedent(f"""
        import sys

        class HideTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)", name=name)
                return None

        sys.meta_path.insert(0, HideTorch())
        try:
            import torch  # noqa: F401
            raise SystemExit("torch was not hidden")
        except ImportError:
            pass

        import math
        import numpy as np
        import runtime.wire as w
        from runtime.model import FLModel

        dtypes = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "float16", "float32", "float64", "complex64", "complex128"]
        rng = np.random.default_rng(0)
        p = {{d: np.frombuffer(rng.bytes(24 * np.dtype(d).itemsize), d).reshape(4, 6).copy()
             for d in dtypes if d != "bool"}}
        p["bool"] = np.array([True, False])
        p["strided"] = np.arange(100.0).reshape(10, 10)[::3, ::-2]
        blob = w.encode_params(p)
        assert len(blob) == w.encoded_size(p)
        asm = w.ParamsAssembler()
        for c in w.iter_chunks(p, 13):
            asm.feed(c)
        for got in (w.decode_params(blob), w.decode_params(blob, copy=False, to="numpy"),
                    asm.result()):
            assert list(got) == list(p)
            for k, v in p.items():
                assert np.ascontiguousarray(v).tobytes() == got[k].tobytes(), k
        m = w.decode_model(w.encode_model(FLModel(params=p, metrics={{"loss": math.nan}})))
        assert math.isnan(m.metrics["loss"]) and np.array_equal(m.params["int64"], p["int64"])

        mixed = open({str(mixed)!r}, "rb").read()
        got = w.decode_params(mixed)  # auto: torch entries come back as numpy
        assert got["t"].dtype == np.int16 and got["t"].tolist() == [0, 1, 2, 3]
        assert got["h"].dtype == np.uint16 and got["h"].tolist() == [0x3F80, 0xC000]
        assert w.decode_params(mixed, bfloat16="float32")["h"].tolist() == [1.0, -2.0]
        assert w.params_format(got) == "numpy"
        for call in (lambda: w.decode_params(mixed, to="torch"),
                     lambda: w.ModelAssembler(to="torch"),
                     lambda: w.params_to_torch(p)):
            try:
                call()
                raise SystemExit("expected ImportError")
            except ImportError as e:
                assert "needs PyTorch" in str(e), e
        assert "torch" not in sys.modules
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr + run.stdout


# ---------------------------------------------------------------- accelerators


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_sent_from_the_device() -> None:
    params = {d: _rand(d, (33, 17), i).cuda() for i, d in enumerate(TORCH_DTYPES)}
    params["t"] = params["float32"].t()
    params["grad"] = torch.randn(8, device="cuda", requires_grad=True)
    blob = encode_params(params)
    assert b"".join(iter_chunks(params, 1000)) == blob
    for got in (decode_params(blob), _assemble(iter_chunks(params, 1000))):
        assert all(_same(params[k], got[k]) for k in params)
        assert all(v.device.type == "cpu" for v in got.values())


def test_tensors_in_meta_come_back_as_tensors_bit_for_bit():
    from runtime.wire import decode_model, encode_model

    c = {"w": torch.randn(3, 2, dtype=torch.float32), "h": torch.tensor([1.5], dtype=torch.bfloat16)}
    got = decode_model(encode_model(FLModel(params={"w": torch.zeros(3, 2)},
                                            meta={"scaffold_c_global": c})))
    for k, v in c.items():
        assert torch.is_tensor(got.meta["scaffold_c_global"][k])
        assert torch.equal(got.meta["scaffold_c_global"][k], v)
