"""Tensor headers are checked before anything is allocated (reliability plan S2, S3): a header
whose dtype, shape and byte length disagree is refused, and one that claims 100 GiB is refused
from the header alone -- by the assembler's max_bytes (what the server's site port sets) or, with
no limit, by the stream being shorter than it claims."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest

from runtime.wire import ModelAssembler, ParamsAssembler, WireError, WireLimitError, decode_params
from runtime.wire import assembler
from runtime.wire.codec import MAGIC

GiB = 1024 ** 3


def stream(entries: list[dict], data: bytes = b"", model: dict | None = None) -> bytes:
    head = {"version": 1, "params": entries}
    if model is not None:
        head["model"] = model
    raw = json.dumps(head).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + data


def entry(dtype: str, shape: list, nbytes: int, name: str = "w", offset: int = 0) -> dict:
    return {"name": name, "kind": "numpy", "dtype": dtype, "shape": shape, "offset": offset,
            "nbytes": nbytes}


@pytest.mark.parametrize("bad, why", [
    (entry("float32", [4], 15), "needs 16 bytes, header says 15"),
    (entry("float32", [4], 32), "needs 16 bytes, header says 32"),
    (entry("int64", [2, 3], 24), "needs 48 bytes"),
    (entry("float16", [-1, 4], 8), "bad shape"),
    (entry("float32", ["4"], 16), "bad shape"),
    (entry("float32", [2] * 65, 4 * 2 ** 65), "bad shape"),
    (entry("object", [1], 8), "dtype 'object' is not allowed"),
    (entry("<f4", [1], 4), "is not allowed"),
    (entry("float128", [1], 16), "is not allowed"),
    (entry("float32", [1], -4), "must be non-negative"),
])
def test_inconsistent_tensor_headers_are_refused(bad, why):
    data = stream([bad], bytes(64))
    with pytest.raises(WireError, match=why.replace("(", r"\(").replace("'", ".")):
        decode_params(data)
    asm = ParamsAssembler(max_bytes=1 << 20)
    with pytest.raises(WireError):
        asm.feed(data)


@pytest.fixture
def no_alloc(monkeypatch):
    """Fail the test if the assembler allocates an array."""
    calls = []
    monkeypatch.setattr(assembler._Assembler, "_alloc",
                        lambda self, name, dt, shape: calls.append((name, shape)) or
                        pytest.fail(f"allocated {shape} of {dt}"))
    return calls


def test_a_header_claiming_100_gib_is_refused_by_the_limit_before_any_allocation(no_alloc):
    claim = stream([entry("float32", [25 * GiB], 100 * GiB)], model={})
    for asm in (ModelAssembler(max_bytes=8 * GiB), ParamsAssembler(max_bytes=8 * GiB)):
        tracemalloc.start()
        with pytest.raises(WireLimitError, match=f"announces {len(claim) + 100 * GiB} bytes, "
                                                 f"more than max_bytes={8 * GiB}"):
            asm.feed(claim[:20])  # header in pieces: nothing is decided until it is whole
            asm.feed(claim[20:] + bytes(4096))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1 << 20
    assert issubclass(WireLimitError, WireError)


def test_a_100_gib_claim_without_a_limit_is_refused_as_truncated_without_allocating(no_alloc):
    claim = stream([entry("float32", [25 * GiB], 100 * GiB)], bytes(4096))
    with pytest.raises(WireError, match="truncated stream: data region has 4096 bytes"):
        decode_params(claim)
    many = stream([entry("uint8", [GiB], GiB, name=f"w{i}", offset=i * GiB) for i in range(100)])
    with pytest.raises(WireError, match="truncated"):
        decode_params(many)


def test_an_honest_stream_at_the_limit_passes():
    from runtime.wire import encode_params

    data = encode_params({"w": np.arange(10, dtype=np.float32)})
    asm = ParamsAssembler(max_bytes=len(data))
    asm.feed(data)
    np.testing.assert_array_equal(asm.result()["w"], np.arange(10, dtype=np.float32))
    with pytest.raises(WireLimitError):
        ParamsAssembler(max_bytes=len(data) - 1).feed(data)
