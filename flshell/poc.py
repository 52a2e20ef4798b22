"""POC mode: a server and N sites as background processes on this machine, on 127.0.0.1 only.

    DIR/poc.json                  what `prepare` made: sites, ports, settings
    DIR/server/config.json        the server's settings (ports fixed at prepare time)
    DIR/<site>/                   each site's workspace
    DIR/<name>/stdout.log         each process's output
    DIR/pids/<name>.json          pid + process start time of what `start` launched

`stop` ends exactly the processes `start` recorded (pid and start time must both match, so a
reused pid is never signalled) and waits for them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

DEFAULT_DIR = Path("/tmp/flshell/poc")
HOST = "127.0.0.1"
MANIFEST = "poc.json"


class PocError(RuntimeError):
    """A POC command could not do what was asked; the message says why and what to do."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PocError(f"{root} is not a POC workspace (no {MANIFEST}): run `flshell poc prepare -w {root}`") from None
    except ValueError as e:
        raise PocError(f"{path}: not valid JSON ({e}); `flshell poc prepare` makes a fresh one") from None


def prepare(root: Path, n_sites: int = 2, sites: list[str] | None = None, force: bool = False,
            heartbeat_interval: float = 2.0, lost_after: float = 10.0) -> dict[str, Any]:
    root = Path(root).absolute()
    names = sites or [f"site-{i}" for i in range(1, n_sites + 1)]
    bad = [s for s in names if not re.fullmatch(r"[A-Za-z0-9_.@-]+", s) or s in ("server", "pids")]
    if bad or not names:
        raise PocError(f"invalid site names: {', '.join(bad) or '(none)'} (letters, digits, _ . @ -)")
    if len(set(names)) != len(names):
        raise PocError("duplicate site names")
    if (root / MANIFEST).exists():
        if running(root):
            raise PocError(f"the POC in {root} is running: `flshell poc stop -w {root}` first")
        if not force:
            raise PocError(f"{root} already holds a POC: `flshell poc clean -w {root}` or prepare --force")
        clean(root)
    elif root.exists() and any(root.iterdir()):
        raise PocError(f"{root} exists and is not a POC workspace: choose another folder with -w")
    fl_port, admin_port = _free_port(), _free_port()
    (root / "server").mkdir(parents=True, exist_ok=True)
    (root / "server" / "config.json").write_text(json.dumps({
        "host": HOST, "fl_port": fl_port, "admin_port": admin_port,
        "heartbeat_interval": heartbeat_interval, "lost_after": lost_after}, indent=2) + "\n")
    for s in names:
        (root / s).mkdir(parents=True, exist_ok=True)
    manifest = {"sites": names, "host": HOST, "fl_port": fl_port, "admin_port": admin_port,
                "fl_address": f"{HOST}:{fl_port}", "admin_address": f"{HOST}:{admin_port}",
                "heartbeat_interval": heartbeat_interval}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _command(root: Path, m: dict[str, Any], name: str) -> list[str]:
    if name == "server":
        return [sys.executable, "-m", "flshell.cli", "server", "--workspace", str(root / "server"),
                "--insecure"]
    return [sys.executable, "-m", "flshell.cli", "client", "--workspace", str(root / name),
            "--name", name, "--server", m["fl_address"], "--insecure",
            "--heartbeat-interval", str(m.get("heartbeat_interval", 2.0))]


def _pid_file(root: Path, name: str) -> Path:
    return root / "pids" / f"{name}.json"


def _recorded(root: Path, name: str) -> psutil.Process | None:
    """The live process `start` recorded for `name`, or None (never started, or gone)."""
    try:
        rec = json.loads(_pid_file(root, name).read_text(encoding="utf-8"))
        proc = psutil.Process(int(rec["pid"]))
        if abs(proc.create_time() - float(rec["create_time"])) > 0.01:
            return None  # the pid was reused by another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def running(root: Path) -> dict[str, psutil.Process]:
    root = Path(root).absolute()
    try:
        m = _manifest(root)
    except PocError:
        return {}
    out = {}
    for name in ["server", *m["sites"]]:
        proc = _recorded(root, name)
        if proc is not None:
            out[name] = proc
    return out


def start(root: Path, names: list[str] | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Start the server and sites (or only `names`) detached; wait until the server answers and
    the started sites are connected. Returns the manifest."""
    root = Path(root).absolute()
    m = _manifest(root)
    everyone = ["server", *m["sites"]]
    wanted = names or everyone
    unknown = [n for n in wanted if n not in everyone]
    if unknown:
        raise PocError(f"unknown POC members: {', '.join(unknown)} (this POC has {', '.join(everyone)})")
    (root / "pids").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = []
    for name in wanted:
        if _recorded(root, name) is not None:
            continue  # already running
        out = open(root / name / "stdout.log", "ab")
        try:
            proc = subprocess.Popen(_command(root, m, name), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                    cwd=root / name)
        finally:
            out.close()
        create_time = psutil.Process(proc.pid).create_time()
        _pid_file(root, name).write_text(json.dumps({"pid": proc.pid, "create_time": create_time,
                                                     "cmd": _command(root, m, name)}))
        started.append(name)
    _wait_ready(root, m, [n for n in wanted if n != "server"], timeout)
    return m


def _wait_ready(root: Path, m: dict[str, Any], sites: list[str], timeout: float) -> None:
    from runtime.admin import Session
    from runtime.admin.errors import AdminError

    deadline = time.monotonic() + timeout
    last = "no answer"
    with Session(m["admin_address"], timeout=2.0) as session:
        while time.monotonic() < deadline:
            for name in ["server", *sites]:
                if _recorded(root, name) is None:
                    raise PocError(f"{name} exited during start; see {root / name / 'stdout.log'}:\n"
                                   + _tail(root / name / "stdout.log"))
            try:
                connected = {s["name"] for s in session.list_sites() if s["status"] == "CONNECTED"}
                missing = [s for s in sites if s not in connected]
                if not missing:
                    return
                last = f"sites not connected yet: {', '.join(missing)}"
            except AdminError as e:
                last = str(e)
            time.sleep(0.05)
    raise PocError(f"the POC did not become ready in {timeout:g}s ({last}); logs in {root}/*/stdout.log")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def stop(root: Path, names: list[str] | None = None, timeout: float = 10.0) -> list[str]:
    """SIGTERM what `start` launched (sites first, then the server), wait, SIGKILL stragglers."""
    root = Path(root).absolute()
    m = _manifest(root)
    order = [*m["sites"], "server"]
    wanted = [n for n in order if names is None or n in names]
    procs = {n: p for n in wanted if (p := _recorded(root, n)) is not None}
    for proc in procs.values():
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    alive = _wait_gone(list(procs.values()), timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _wait_gone(alive, 5.0)
    for n in wanted:
        _pid_file(root, n).unlink(missing_ok=True)
    return sorted(procs)


def _gone(proc: psutil.Process) -> bool:
    try:  # an exited process whose parent has not reaped it yet (a zombie) counts as gone
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [p for p in alive if not _gone(p)]
    return alive


def clean(root: Path) -> None:
    root = Path(root).absolute()
    _manifest(root)  # refuses a folder that is not a POC
    if running(root):
        stop(root)
    shutil.rmtree(root)


def status(root: Path) -> dict[str, Any]:
    root = Path(root).absolute()
    m = _manifest(root)
    procs = running(root)
    members = [{"name": n, "running": n in procs, "pid": procs[n].pid if n in procs else None}
               for n in ["server", *m["sites"]]]
    out: dict[str, Any] = {"workspace": str(root), "admin_address": m["admin_address"],
                           "fl_address": m["fl_address"], "members": members, "sites": None}
    if "server" in procs:
        from runtime.admin import Session
        from runtime.admin.errors import AdminError

        try:
            with Session(m["admin_address"], timeout=3.0) as s:
                out["sites"] = s.list_sites()
        except AdminError as e:
            out["server_error"] = str(e)
    return out


def admin_address(root: Path) -> str:
    return _manifest(Path(root).absolute())["admin_address"]
