"""POC mode: a server and N sites as background processes on this machine, on 127.0.0.1 only:
the federation's own commands (`flshell server`, `flshell client`), each in a process of its
own. `flshell poc ...` and the recipes' PocEnv both manage a POC through this module.

    DIR/poc.json                  what `prepare` made: sites, ports, settings
    DIR/server/config.json        the server's settings (ports fixed at prepare time)
    DIR/<site>/                   each site's workspace
    DIR/<name>/stdout.log         each process's output
    DIR/pids/<name>.json          pid + process start time of what `start` launched
    DIR/prod/                     (secure POC, the default) the provisioned project: ca/, one
                                  startup kit per participant (server "localhost", each site,
                                  the project admin "admin@poc"); processes start with --startup

A secure POC runs mutual TLS on both ports like a provisioned federation: `flshell --poc DIR`
attaches as admin@poc with its kit. `prepare(..., secure=False)` (`--insecure`) makes a plain-
text one, as before.

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

from runtime import paths

DEFAULT_DIR = paths.default("poc")  # $FLSHELL_HOME/poc: see runtime.paths
HOST = "127.0.0.1"
MANIFEST = "poc.json"
KITS_DIR = "prod"
SERVER_NAME = "localhost"  # the server's certificate covers localhost and 127.0.0.1
ADMIN = "admin@poc"
ORG = "poc"


class PocError(RuntimeError):
    """A POC command could not do what was asked; the message says why and what to do."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def manifest(root: Path) -> dict[str, Any]:
    """What `prepare` wrote in the POC workspace `root` (PocError, saying how to make one, if
    it is missing or unreadable)."""
    root = Path(root).absolute()
    path = root / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PocError(f"{root} is not a POC workspace (no {MANIFEST}): run `flshell poc prepare -w {root}`") from None
    except ValueError as e:
        raise PocError(f"{path}: not valid JSON ({e}); `flshell poc prepare` makes a fresh one") from None


def prepare(root: Path, n_sites: int = 2, sites: list[str] | None = None, force: bool = False,
            heartbeat_interval: float = 2.0, lost_after: float = 10.0,
            secure: bool = True) -> dict[str, Any]:
    """Make the POC workspace. `secure` (the default): provision a project for it (CA, signed
    startup kits) so both ports run mutual TLS; False: plain text."""
    root = Path(root).absolute()
    names = sites or [f"site-{i}" for i in range(1, n_sites + 1)]
    bad = [s for s in names if not re.fullmatch(r"[A-Za-z0-9_.@-]+", s)
           or s in ("server", "pids", KITS_DIR)]
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
    paths.ensure(root / "server")
    (root / "server" / "config.json").write_text(json.dumps({
        "host": HOST, "fl_port": fl_port, "admin_port": admin_port,
        "heartbeat_interval": heartbeat_interval, "lost_after": lost_after}, indent=2) + "\n")
    for s in names:
        (root / s).mkdir(parents=True, exist_ok=True)
    manifest = {"sites": names, "host": HOST, "fl_port": fl_port, "admin_port": admin_port,
                "fl_address": f"{HOST}:{fl_port}", "admin_address": f"{HOST}:{admin_port}",
                "heartbeat_interval": heartbeat_interval, "secure": secure}
    if secure:
        manifest["kits"] = _provision(root, names, fl_port, admin_port, heartbeat_interval,
                                      lost_after)
        manifest["admin_kit"] = manifest["kits"][ADMIN]
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _provision(root: Path, names: list[str], fl_port: int, admin_port: int,
               heartbeat_interval: float, lost_after: float) -> dict[str, str]:
    """Provision the POC's project into DIR/prod; {participant name: kit folder}."""
    from provisioning import ProjectError, project_from_dict, provision

    project = {"name": "poc", "participants": [
        {"type": "server", "name": SERVER_NAME, "host": HOST, "fl_port": fl_port,
         "admin_port": admin_port},
        *({"type": "client", "name": s, "org": ORG} for s in names),
        {"type": "admin", "name": ADMIN, "org": ORG, "role": "project_admin"}]}
    try:
        kits = provision(project_from_dict(project, "the POC's project"), root / KITS_DIR)
    except ProjectError as e:
        raise PocError(f"cannot provision the POC: {e.message} (or prepare --insecure)") from None
    resources = kits[SERVER_NAME] / "local" / "resources.json"  # local/ is the server's to edit
    resources.write_text(json.dumps({"max_jobs": 2, "heartbeat_interval": heartbeat_interval,
                                     "lost_after": lost_after}, indent=2) + "\n")
    return {name: str(path) for name, path in kits.items()}


def admin_kit(root: Path | str) -> str | None:
    """The admin startup kit of a secure POC (None for an insecure one)."""
    m = manifest(Path(root).absolute())
    return m.get("admin_kit") if m.get("secure") else None


def admin_session(root: Path | str, timeout: float = 30.0, m: dict[str, Any] | None = None):
    """An admin Session on the POC: as admin@poc with its kit when the POC is secure."""
    from runtime.admin import Session

    m = m or manifest(Path(root).absolute())
    if m.get("secure"):
        return Session.from_startup_kit(m["admin_kit"], address=m["admin_address"],
                                        timeout=timeout)
    return Session(m["admin_address"], timeout=timeout)


def _command(root: Path, m: dict[str, Any], name: str) -> list[str]:
    if m.get("secure"):
        if name == "server":
            return [sys.executable, "-m", "flshell.cli", "server", "--startup",
                    m["kits"][SERVER_NAME], "--workspace", str(root / "server")]
        return [sys.executable, "-m", "flshell.cli", "client", "--startup", m["kits"][name],
                "--workspace", str(root / name), "--server", m["fl_address"],
                "--heartbeat-interval", str(m.get("heartbeat_interval", 2.0))]
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
        m = manifest(root)
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
    m = manifest(root)
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
    from runtime.admin.errors import AdminError

    deadline = time.monotonic() + timeout
    last = "no answer"
    with admin_session(root, timeout=2.0, m=m) as session:
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
    m = manifest(root)
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
    manifest(root)  # refuses a folder that is not a POC
    if running(root):
        stop(root)
    shutil.rmtree(root)


def status(root: Path) -> dict[str, Any]:
    root = Path(root).absolute()
    m = manifest(root)
    procs = running(root)
    members = [{"name": n, "running": n in procs, "pid": procs[n].pid if n in procs else None}
               for n in ["server", *m["sites"]]]
    out: dict[str, Any] = {"workspace": str(root), "admin_address": m["admin_address"],
                           "fl_address": m["fl_address"], "members": members, "sites": None,
                           "secure": bool(m.get("secure")), "admin_kit": m.get("admin_kit")}
    if "server" in procs:
        from runtime.admin.errors import AdminError

        try:
            with admin_session(root, timeout=3.0, m=m) as s:
                out["sites"] = s.list_sites()
        except AdminError as e:
            out["server_error"] = str(e)
    return out


def admin_address(root: Path) -> str:
    return manifest(Path(root).absolute())["admin_address"]
