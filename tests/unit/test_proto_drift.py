"""The checked-in gRPC modules are exactly what runtime/proto/generate.py makes from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_match_the_protos(tmp_path):
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is missing: it is in the test extra (pip install -e '.[test]')")
    spec = importlib.util.spec_from_file_location("flshell_proto_generate", ROOT / "runtime" / "proto" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path)
    assert fresh, "no .proto files found"
    for path in fresh:
        checked_in = ROOT / "runtime" / "proto" / path.name
        assert checked_in.is_file(), f"{path.name} is not checked in: run python runtime/proto/generate.py"
        assert checked_in.read_text() == path.read_text(), (
            f"{checked_in.relative_to(ROOT)} is stale: run python runtime/proto/generate.py")
