"""The layers hold: every import under runtime/, provisioning/ and flshell/ (lazy ones inside
functions too) is checked against the rules of shared/DESIGN.md. The rules are data below;
`violations(root)` reads a tree's files as text (nothing is imported), so the same check runs
on a deliberately bad tree to show it fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Low to high: a runtime package may import its own modules and those of lower layers only.
LAYERS: list[set[str]] = [
    {"runtime", "runtime.model", "runtime.paths", "runtime.version", "runtime.logfiles", "runtime.proto",
     "runtime.monitor", "runtime.tracking"},
    {"runtime.wire", "runtime.resources"},
    {"runtime.jobs", "runtime.transport"},
    {"runtime.workflows", "runtime.client", "runtime.admin"},
    {"runtime.server"},
    {"runtime.federation"},
    {"runtime.sim"},
    {"runtime.recipes"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}

# (importer prefix, imported prefix, why): refused even where the layers would allow it.
FORBIDDEN = [
    ("runtime.server", "runtime.client", "server and client meet only through the transport"),
    ("runtime.client", "runtime.server", "server and client meet only through the transport"),
    ("runtime.workflows", "runtime.server", "workflows see a context protocol, not the server"),
    ("runtime.workflows", "runtime.client", "workflows run on the server side"),
    ("runtime.wire", "runtime.jobs", "the wire imports nothing above it"),
    ("runtime", "flshell", "the runtime imports no front end"),
    ("runtime", "textual", "the runtime imports no front end"),
    ("runtime", "prompt_toolkit", "the runtime imports no front end"),
    ("runtime", "rich", "the runtime imports no front end"),
    ("provisioning", "flshell", "provisioning imports no front end"),
    ("provisioning", "textual", "provisioning imports no front end"),
    ("provisioning", "prompt_toolkit", "provisioning imports no front end"),
    ("flshell", "runtime.proto", "front ends use runtime.admin, never the generated protos"),
]
TOP = ("runtime", "provisioning", "flshell")


def _package(module: str) -> str:
    """runtime.server.engine -> runtime.server; runtime.model -> runtime.model; runtime -> runtime."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "runtime" else parts[0]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names if a.name != "*"]
    return out


def violations(root: Path) -> list[str]:
    """Every import under `root` that breaks a rule: 'file:line: a -> b (why)'."""
    found: dict[tuple[Path, int], str] = {}  # the first rule a line breaks
    for top in TOP:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            if module.endswith(".__init__"):
                module = module[: -len(".__init__")]
            if _under(module, "runtime.proto"):
                continue  # generated
            src_pkg = _package(module)
            for line, name in _imports(path, module):
                if not name:
                    continue
                why = next((w for a, b, w in FORBIDDEN
                            if _under(module, a) and _under(name, b)), None)
                dst_pkg = _package(name)
                if why is None and src_pkg in LAYER and dst_pkg in LAYER and dst_pkg != src_pkg \
                        and LAYER[dst_pkg] > LAYER[src_pkg]:
                    why = f"{src_pkg} (layer {LAYER[src_pkg]}) imports a higher layer ({LAYER[dst_pkg]})"
                if why is None and src_pkg.startswith("runtime.") and src_pkg not in LAYER:
                    why = f"{src_pkg} is in no layer: add it to LAYERS"
                if why is None and name.startswith("runtime.") and dst_pkg not in LAYER \
                        and (root / Path(*dst_pkg.split("."))).exists():
                    why = f"{dst_pkg} is in no layer: add it to LAYERS"
                if why is not None:
                    found.setdefault((rel, line), f"{rel}:{line}: {module} -> {name} ({why})")
    return sorted(found.values())


def test_the_code_keeps_the_layers():
    assert violations(ROOT) == []


BAD = {
    "runtime/server/bad.py": "from runtime.client.agent import SiteAgent\n",
    "runtime/client/bad.py": "def f():\n    import runtime.server.engine\n",
    "runtime/workflows/bad.py": "from runtime.server import job_runner\n",
    "runtime/wire/bad.py": "from ..jobs import load_job\n",
    "runtime/transport/bad.py": "from runtime.sim.simulator import Simulator\n",
    "runtime/model.py": "import textual\n",
    "provisioning/bad.py": "from prompt_toolkit import prompt\n",
    "flshell/bad.py": "from runtime.proto import admin_pb2\n",
}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_each_rule_fails_on_a_bad_module(tmp_path, bad):
    for top in TOP:
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    for pkg in ("server", "client", "workflows", "wire", "transport", "jobs", "sim", "proto"):
        (tmp_path / "runtime" / pkg).mkdir()
        (tmp_path / "runtime" / pkg / "__init__.py").write_text("")
    (tmp_path / "runtime" / "model.py").write_text("import numpy\n")
    assert violations(tmp_path) == []
    (tmp_path / bad).write_text(BAD[bad])
    found = violations(tmp_path)
    assert len(found) >= 1 and all(f.startswith(bad + ":") for f in found), found
