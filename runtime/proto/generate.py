"""Regenerate the checked-in gRPC modules from the .proto files: python runtime/proto/generate.py

Needs grpcio-tools: `pip install grpcio-tools`, or the `test` extra (`pip install -e ".[test]"`).
tests/unit/test_proto_drift.py fails when the checked-in modules differ from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted(p.relative_to(ROOT) for p in (ROOT / "runtime" / "proto").glob("*.proto"))


class GenerateError(RuntimeError):
    """Regeneration cannot run (a missing tool) or protoc failed."""


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules for every .proto into out_dir/runtime/proto/."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise GenerateError(
            "regenerating the gRPC modules needs grpcio-tools, which is not installed: "
            'pip install grpcio-tools (or pip install -e ".[test]", the test extra)') from None

    (out_dir / "runtime" / "proto").mkdir(parents=True, exist_ok=True)
    for proto in PROTOS:
        rc = protoc.main(["protoc", f"-I{ROOT}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", str(proto)])
        if rc != 0:
            raise GenerateError(f"protoc failed on {proto} (exit {rc})")
    return sorted((out_dir / "runtime" / "proto").glob("*_pb2*.py"))


if __name__ == "__main__":
    try:
        written = generate(ROOT)
    except GenerateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(str(p.relative_to(ROOT)) for p in written))
    sys.exit(0)
