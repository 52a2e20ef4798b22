"""Hand-encoded Frames are byte-for-byte protobuf's encoding of fl.proto's Frame, both ways."""

from __future__ import annotations

import random

import pytest

from runtime.proto import fl_pb2
from runtime.transport.frames import FrameError, data_frame, decode_frame, encode_frame, header_frame


@pytest.mark.parametrize("header,data", [
    ("", b""), ('{"kind": "task"}', b""), ("", b"\x00" * 300), ("é" * 200, bytes(range(256)) * 70),
    ("", bytes(random.Random(1).getrandbits(8) for _ in range(20000))),
])
def test_encoding_matches_protobuf(header, data):
    ours = encode_frame(header or None, data or None)
    assert ours == fl_pb2.Frame(header=header, data=data).SerializeToString()
    back = decode_frame(fl_pb2.Frame(header=header, data=data).SerializeToString())
    assert (back.header, bytes(back.data)) == (header, data)
    parsed = fl_pb2.Frame.FromString(ours)
    assert (parsed.header, parsed.data) == (header, data)


def test_helpers_and_memoryview_input():
    assert header_frame("h") == fl_pb2.Frame(header="h").SerializeToString()
    mv = memoryview(bytearray(b"abcdef"))[2:5]
    assert data_frame(mv) == fl_pb2.Frame(data=b"cde").SerializeToString()


def test_unknown_fields_are_skipped():
    raw = fl_pb2.Frame(header="h", data=b"xy").SerializeToString()
    extra = bytes([3 << 3 | 0, 0x96, 0x01]) + bytes([4 << 3 | 2, 2]) + b"zz" + bytes([5 << 3 | 5]) + b"abcd"
    f = decode_frame(extra + raw)
    assert (f.header, bytes(f.data)) == ("h", b"xy")


@pytest.mark.parametrize("raw", [b"\x12\x05abc", b"\x12", b"\x0a\x02\xff\xfe", b"\x0b", b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"])
def test_malformed_frames_are_refused(raw):
    with pytest.raises(FrameError):
        decode_frame(raw)
