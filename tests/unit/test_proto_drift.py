"""The checked-in gRPC modules describe exactly what the .proto files say.

Compared as descriptors, not as text: what protoc makes from each .proto (a FileDescriptorProto)
must equal the descriptor the checked-in module carries, and the checked-in _grpc module must
serve every method of every service. A new grpcio-tools release that only changes the header
of the generated code cannot fail this; a .proto edited without regenerating does."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted((ROOT / "runtime" / "proto").glob("*.proto"))


def _compiled(proto: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is missing: it is in the test extra (pip install -e '.[test]')")
    from grpc_tools import protoc

    out = tmp_path / f"{proto.stem}.pb"
    rel = proto.relative_to(ROOT)
    assert protoc.main(["protoc", f"-I{ROOT}", f"--descriptor_set_out={out}", str(rel)]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    (fd,) = [f for f in files if f.name == str(rel)]
    return _without_json_names(fd)


def _without_json_names(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor sets spell out each field's json_name, which the generated module
    leaves to be derived: not a difference."""
    def clear(messages) -> None:
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            clear(m.nested_type)
    clear(fd.message_type)
    return fd


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_the_checked_in_module_has_the_protos_descriptor(proto, tmp_path):
    module = importlib.import_module(f"runtime.proto.{proto.stem}_pb2")
    checked_in = _without_json_names(
        descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    fresh = _compiled(proto, tmp_path)
    assert checked_in == fresh, (f"runtime/proto/{proto.stem}_pb2.py is stale: run "
                                 "python runtime/proto/generate.py")


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_the_checked_in_grpc_module_serves_every_method(proto, tmp_path):
    fresh = _compiled(proto, tmp_path)
    text = (ROOT / "runtime" / "proto" / f"{proto.stem}_pb2_grpc.py").read_text()
    grpc_module = importlib.import_module(f"runtime.proto.{proto.stem}_pb2_grpc")
    assert fresh.service, proto
    for service in fresh.service:
        full = f"{fresh.package}.{service.name}"
        assert hasattr(grpc_module, f"{service.name}Stub"), service.name
        assert hasattr(grpc_module, f"add_{service.name}Servicer_to_server"), service.name
        for method in service.method:
            assert f"'/{full}/{method.name}'" in text, (
                f"{proto.stem}_pb2_grpc.py lacks {full}/{method.name}: run "
                "python runtime/proto/generate.py")
