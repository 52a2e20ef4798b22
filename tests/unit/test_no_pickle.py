"""No pickle anywhere (reliability plan S8): a scan of the source tree for the calls that would
unpickle foreign bytes -- pickle / cPickle / dill / cloudpickle load(s), numpy.load with
allow_pickle=True, torch.load without weights_only=True, pandas.read_pickle, shelve, and any
import of cloudpickle or dill. The only pickling allowed is a test's round trip of its own
object, `pickle.loads(pickle.dumps(x))`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("runtime", "flshell", "provisioning", "examples", "tests")
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"}
BANNED_MODULES = {"cloudpickle", "dill", "shelve"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def forbidden(source: str, filename: str = "<src>") -> list[str]:
    """(line: what) for every forbidden call or import in `source`."""
    tree = ast.parse(source, filename)
    out: list[str] = []
    aliases: dict[str, str] = {}  # local name -> module.function it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in BANNED_MODULES:
                    out.append(f"{node.lineno}: import {a.name}")
                aliases[a.asname or top] = a.name if a.asname else top
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in BANNED_MODULES:
                out.append(f"{node.lineno}: from {node.module} import ...")
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        mod, _, fn = full.rpartition(".")
        if mod.split(".")[0] in PICKLERS and fn in ("load", "loads", "Unpickler"):
            arg = node.args[0] if node.args else None
            own = (fn == "loads" and isinstance(arg, ast.Call)
                   and _dotted(arg.func).endswith("dumps"))  # a round trip of its own object
            if not own:
                out.append(f"{node.lineno}: {name}(...)")
        elif full in ("numpy.load", "np.load") and _is_true(_kw(node, "allow_pickle")):
            out.append(f"{node.lineno}: {name}(..., allow_pickle=True)")
        elif full == "torch.load" and not _is_true(_kw(node, "weights_only")):
            out.append(f"{node.lineno}: {name}(...) without weights_only=True")
        elif full in ("pandas.read_pickle", "pd.read_pickle") or fn == "read_pickle":
            out.append(f"{node.lineno}: {name}(...)")
    return out


@pytest.mark.parametrize("code, found", [
    ("import pickle\npickle.loads(data)", "pickle.loads"),
    ("import pickle as p\np.load(f)", "p.load"),
    ("from pickle import loads\nloads(b)", "loads"),
    ("import cloudpickle", "import cloudpickle"),
    ("from dill import loads", "from dill"),
    ("import numpy as np\nnp.load('x.npy', allow_pickle=True)", "allow_pickle=True"),
    ("import torch\ntorch.load('m.pt')", "without weights_only=True"),
    ("import torch\ntorch.load('m.pt', weights_only=False)", "without weights_only=True"),
    ("import pandas as pd\npd.read_pickle('x')", "read_pickle"),
])
def test_the_scanner_finds_each_forbidden_call(code, found):
    hits = forbidden(code)
    assert hits and found in hits[0], hits


@pytest.mark.parametrize("code", [
    "import numpy as np\nnp.load('x.npz', allow_pickle=False)",
    "import numpy as np\nnp.load('x.npy')",
    "import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)",
    "import pickle\nassert pickle.loads(pickle.dumps(err)) == err",
    "import json\njson.loads('{}')",
])
def test_the_scanner_allows_safe_calls(code):
    assert forbidden(code) == []


def test_no_forbidden_unpickling_anywhere_in_the_source_tree():
    files = [p for d in SCANNED for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts]
    assert len(files) > 100
    hits = {}
    for path in files:
        found = forbidden(path.read_text(encoding="utf-8"), str(path))
        if found:
            hits[str(path.relative_to(ROOT))] = found
    assert not hits, hits
