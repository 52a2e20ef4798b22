"""Per-job custom/ code isolation: same-named modules of concurrent jobs, packages, binding, cleanup."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from runtime.jobs import custom_import as ci
from tests.unit.jobdata import components as events_module

NAMES = ("model", "helpers", "helpers.util", "helpers.inner", "only_b", "broken", "tool")


def write_job(root: Path, tag: str, extra: dict[str, str] | None = None) -> Path:
    files = {
        "model.py": (f"VALUE = {tag!r}\nfrom tests.unit.jobdata import components as _c\n_c.EVENTS.append({tag!r})\n"
                     "def lazy_value():\n    import model\n    return model.VALUE\n"),
        "helpers/__init__.py": "from .util import f\n",
        "helpers/util.py": (f"from . import inner\nfrom .inner import MARK\n\n"
                            f"def f():\n    return {tag!r} + inner.MARK\n"),
        "helpers/inner.py": f"MARK = '!{tag}'\n",
        **(extra or {}),
    }
    for name, text in files.items():
        path = root / "custom" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "custom"


@pytest.fixture
def jobs(tmp_path: Path):
    before = set(sys.modules)
    a = write_job(tmp_path / "job_a", "a", {"tool.py": "def run(fn):\n    return fn()\n"})
    b = write_job(tmp_path / "job_b", "b", {"only_b.py": "ONLY = 'b'\n"})
    ci.register_custom_dir("A", a)
    ci.register_custom_dir("B", b)
    events_module.EVENTS.clear()
    yield a, b
    ci.uninstall()
    ci.unbind_thread()
    for name in set(sys.modules) - before:
        if name in NAMES or name.startswith(ci.PRIVATE_PREFIX):
            del sys.modules[name]
    assert not any(isinstance(f, ci._CustomFinder) for f in sys.meta_path)


def in_thread(key: str | None, fn: Callable[[], Any]) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        if key is not None:
            ci.bind_thread(key)
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_two_threads_same_names_see_their_own_job(jobs) -> None:
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def worker(key: str) -> None:
        try:
            ci.bind_thread(key)
            barrier.wait()
            import model
            barrier.wait()
            from helpers.util import f
            barrier.wait()
            import helpers.util
            import helpers
            results[key] = (model.VALUE, f(), helpers.util.f(), helpers.f(), helpers.inner.MARK, model.lazy_value())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert results["A"] == ("a", "a!a", "a!a", "a!a", "!a", "a")
    assert results["B"] == ("b", "b!b", "b!b", "b!b", "!b", "b")
    assert sorted(events_module.EVENTS) == ["a", "b"]  # each job's module ran exactly once


def test_bare_import_runs_the_jobs_module(jobs) -> None:
    in_thread("A", lambda: __import__("model"))
    assert events_module.EVENTS == ["a"]
    in_thread("B", lambda: __import__("model"))  # proxy already exists: B's module still runs at import
    assert events_module.EVENTS == ["a", "b"]
    in_thread("B", lambda: __import__("model"))
    assert events_module.EVENTS == ["a", "b"]


def test_job_cannot_see_other_jobs_modules(jobs) -> None:
    with pytest.raises(ModuleNotFoundError):
        in_thread("A", lambda: __import__("only_b"))
    assert in_thread("B", lambda: __import__("only_b").ONLY) == "b"

    def from_a() -> Any:
        import only_b  # the proxy exists now (created by B)
        return only_b.ONLY

    with pytest.raises(ImportError, match=r'no module named "only_b" in the custom/ folder of job "A"'):
        in_thread("A", from_a)
    with pytest.raises(ImportError, match=r'no module named "only_b" in the custom/ folder of job "A"'):
        in_thread("A", lambda: exec("from only_b import ONLY", {}))
    assert "only_b" not in dir(in_thread("A", lambda: __import__("helpers")))


def test_unbound_thread(jobs) -> None:
    proxy = in_thread("A", lambda: __import__("model"))
    unbound = r'"model" is custom code of a job \(A, B\) and this thread is bound to no job'
    with pytest.raises(ImportError, match=unbound):
        in_thread(None, lambda: proxy.VALUE)
    with pytest.raises(ImportError, match="bound to no job"):
        in_thread(None, lambda: __import__("only_b"))
    # code of job A that imports lazily still resolves to job A, whatever thread runs it
    assert in_thread(None, lambda: ci.sys.modules[f"{ci._pkgs['A']}.model"].lazy_value()) == "a"
    assert in_thread("B", lambda: ci.sys.modules[f"{ci._pkgs['A']}.model"].lazy_value()) == "a"


def test_single_registered_job_is_the_fallback(jobs) -> None:
    ci.unregister("B")
    assert in_thread(None, lambda: __import__("model").VALUE) == "a"
    assert ci.current_job_key() == "A"


def test_job_import_context_nests_and_restores(jobs) -> None:
    with ci.job_import_context("A"):
        import model
        assert model.VALUE == "a"
        with ci.job_import_context("B"):
            assert model.VALUE == "b" and ci.current_job_key() == "B"
        assert model.VALUE == "a"
    assert ci.current_job_key() is None


def test_unregister_drops_private_modules_and_orphan_proxies(jobs) -> None:
    in_thread("A", lambda: __import__("helpers.util"))
    in_thread("B", lambda: __import__("only_b"))
    pkg_b = ci._pkgs["B"]
    assert "only_b" in sys.modules and f"{pkg_b}.only_b" in sys.modules
    ci.unregister("B")
    assert "only_b" not in sys.modules and not any(n.startswith(pkg_b) for n in sys.modules)
    assert "helpers.util" in sys.modules  # job A still provides it
    with pytest.raises(ImportError, match='bound to job "B", which is not registered'):
        in_thread("B", lambda: sys.modules["helpers"].f)
    ci.unregister("B")  # no-op
    ci.unregister("A")
    assert not any(n in sys.modules for n in NAMES)


def test_stdlib_and_other_names_untouched(jobs, tmp_path: Path) -> None:
    stdlib = sys.modules["json"]
    shadow = write_job(tmp_path / "job_c", "c", {"json.py": "X = 1\n"})
    with pytest.warns(UserWarning, match=r'custom/json.py of job "C" is hidden by the already imported module "json"'):
        ci.register_custom_dir("C", shadow)

    def check() -> tuple:
        import json as j
        import numpy
        import collections.abc
        return j, numpy.__name__, collections.abc.__name__

    assert in_thread("C", check) == (stdlib, "numpy", "collections.abc")
    assert json is stdlib and not isinstance(sys.modules["numpy"], ci._CustomProxy)


def test_errors_in_custom_code_surface(jobs, tmp_path: Path) -> None:
    write_job(tmp_path / "job_a", "a", {"broken.py": "raise ValueError('bad config')\n"})
    with pytest.raises(ValueError, match="bad config"):
        in_thread("A", lambda: __import__("broken"))
    assert "broken" not in sys.modules  # a failed first import leaves nothing behind
    write_job(tmp_path / "job_b", "b", {"broken.py": "OK = True\n"})
    assert in_thread("B", lambda: __import__("broken").OK) is True
    with pytest.raises(ValueError, match="bad config"):
        in_thread("A", lambda: __import__("broken").OK)


def test_proxy_attribute_writes_go_to_the_current_job(jobs) -> None:
    with ci.job_import_context("A"):
        import model
        model.EXTRA = 1
        assert model.EXTRA == 1 and "EXTRA" in dir(model)
    with ci.job_import_context("B"):
        assert not hasattr(model, "EXTRA")
        assert model.__file__.endswith("job_b/custom/model.py")
        assert model.__name__ == "model"


def test_register_rules(jobs, tmp_path: Path) -> None:
    ci.register_custom_dir("A", jobs[0])  # idempotent
    with pytest.raises(ValueError, match='import key "A" is already registered'):
        ci.register_custom_dir("A", jobs[1])
    with pytest.raises(FileNotFoundError):
        ci.register_custom_dir("X", tmp_path / "missing")
    ci.install()
    assert sum(isinstance(f, ci._CustomFinder) for f in sys.meta_path) == 1
    assert isinstance(sys.meta_path[0], ci._CustomFinder)


def test_same_key_text_different_packages(jobs, tmp_path: Path) -> None:
    one = write_job(tmp_path / "x1", "x1")
    two = write_job(tmp_path / "x2", "x2")
    ci.register_custom_dir("job/1", one)
    ci.register_custom_dir("job.1", two)
    assert ci._pkgs["job/1"] != ci._pkgs["job.1"]
    assert in_thread("job/1", lambda: __import__("model").VALUE) == "x1"
    assert in_thread("job.1", lambda: __import__("model").VALUE) == "x2"


def test_custom_imports_for_an_app(jobs, tmp_path: Path) -> None:
    class App:
        custom_dir = write_job(tmp_path / "app_d", "d")

    with ci.custom_imports(App()) as key:
        import model
        assert model.VALUE == "d" and key == ci.app_key(App())
    assert ci.current_job_key() is None and key in ci.registered()

    class NoCustom:
        custom_dir = None

    with ci.custom_imports(NoCustom()) as key:
        assert key is None


def test_threads_of_one_job_wait_for_a_module_still_being_imported(jobs, tmp_path: Path) -> None:
    """Sites of one process that share a job (the simulator unpacks it once) import its custom
    modules from several threads at once: a thread that finds the job's module still running
    its body waits for it, instead of seeing it half made ('cannot import name')."""
    import importlib

    gate_name = "_flshell_test_gate"
    gate = type(sys)(gate_name)
    gate.entered, gate.release = threading.Event(), threading.Event()
    sys.modules[gate_name] = gate
    slow = tmp_path / "job_s" / "custom"
    slow.mkdir(parents=True)
    (slow / "model.py").write_text(
        f"import {gate_name} as g\ng.entered.set()\ng.release.wait(10)\nVALUE = 's'\n")
    ci.register_custom_dir("S", slow)
    try:
        assert in_thread("A", lambda: __import__("model").VALUE) == "a"  # the proxy exists, ready
        out: dict[str, Any] = {}

        def importer(tag: str) -> None:
            ci.bind_thread("S")
            try:
                from model import VALUE
                out[tag] = VALUE
            except BaseException as e:  # noqa: BLE001 - handed back to the test
                out[tag] = e

        first = threading.Thread(target=importer, args=("first",))
        first.start()
        assert gate.entered.wait(10)  # the first thread runs model.py's body now
        second = threading.Thread(target=importer, args=("second",))
        second.start()
        real = f"{ci._pkgs['S']}.model"
        for _ in range(1000):  # until the second has failed, or waits for the module's lock
            lock = importlib._bootstrap._module_locks.get(real)
            lock = lock() if lock is not None else None
            if not second.is_alive() or (lock is not None and lock.waiters):
                break
            second.join(0.01)
        gate.release.set()
        first.join(10)
        second.join(10)
        assert out == {"first": "s", "second": "s"}
    finally:
        gate.release.set()
        del sys.modules[gate_name]
