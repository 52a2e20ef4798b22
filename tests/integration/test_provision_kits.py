"""`flshell provision` end to end, and the kits' start.sh / stop.sh / flshell.sh as processes.

The scripts run a stand-in for `flshell` (FLSHELL=...) that records its arguments and loads the
kit with provisioning.load_kit, as `flshell server|client --startup KIT` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "project.yml"
RUNNER = (
    "import argparse, sys\n"
    "from flshell import provision_cmd\n"
    "p = argparse.ArgumentParser(prog='flshell'); sub = p.add_subparsers(dest='command')\n"
    "provision_cmd.add_parser(sub)\n"
    "sys.exit(provision_cmd.run(p.parse_args(sys.argv[1:])))\n"
)
FAKE_FLSHELL = """\
#!{python}
import json, os, sys, time
sys.path.insert(0, {root!r})
args = sys.argv[1:]
with open(os.environ["FAKE_ARGS"], "w") as f:
    json.dump(args, f)
from provisioning import KitError, load_kit
try:
    kit = load_kit(args[args.index("--startup") + 1])
except KitError as e:
    print(f"error: {{e}}", file=sys.stderr)
    sys.exit(2)
print(f"running {{kit.type}} {{kit.name}} as {{kit.role}}", flush=True)
if os.environ.get("FAKE_STAY"):
    time.sleep(120)
"""


def provision_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", RUNNER, "provision", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("prov")
    r = provision_cli(str(EXAMPLE), "-o", "prod", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "project example-project: 6 startup kits in prod" in r.stdout
    assert "rootCA.key" in r.stdout
    return cwd / "prod"


@pytest.fixture()
def env(tmp_path) -> dict[str, str]:
    fake = tmp_path / "fake-flshell"
    fake.write_text(FAKE_FLSHELL.format(python=sys.executable, root=str(ROOT)))
    fake.chmod(0o755)
    return {**os.environ, "FLSHELL": str(fake), "FAKE_ARGS": str(tmp_path / "args.json"),
            "FAKE_STAY": "1", "STOP_TIMEOUT": "10"}


def sh(script: Path, *args: str, env: dict[str, str],
       cwd: str = "/") -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def test_cli_writes_every_kit(prod):
    assert sorted(p.name for p in prod.iterdir()) == sorted([
        "ca", "localhost", "site-1", "site-2", "admin@example.com", "lead@hospital-a.org",
        "viewer@hospital-b.org"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", RUNNER, "provision", "--verify",
                        *[str(p) for p in sorted(prod.iterdir()) if p.name != "ca"]],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok ") == 6
    assert "admin viewer@hospital-b.org (hospital-b, member)" in r.stdout


def test_cli_errors(tmp_path):
    bad = tmp_path / "project.yml"
    bad.write_text(EXAMPLE.read_text().replace(
        "    org: hospital-b\n    allow_custom_code",
        "    org: hospital-b\n    gpus: 4\n    allow_custom_code"))
    r = provision_cli("project.yml", cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "prod").exists()
    line = bad.read_text().splitlines().index("    gpus: 4") + 1
    assert f"error: project.yml:{line}: participants[2] (client): unknown key 'gpus'" in r.stderr

    r = provision_cli(str(EXAMPLE), cwd=tmp_path)  # default ./prod
    assert r.returncode == 0 and (tmp_path / "prod" / "site-1" / "startup").is_dir()
    r = provision_cli(str(EXAMPLE), cwd=tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr and "--force" in r.stderr
    old = (tmp_path / "prod" / "ca" / "rootCA.pem").read_bytes()
    r = provision_cli(str(EXAMPLE), "--force", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "prod" / "ca" / "rootCA.pem").read_bytes() != old

    r = provision_cli(cwd=tmp_path)
    assert r.returncode == 2 and "project.yml is required" in r.stderr
    cfg = tmp_path / "prod" / "site-2" / "startup" / "fed_client.json"
    cfg.write_text(cfg.read_text().replace("8002", "9002"))
    r = provision_cli("--verify", "prod/site-1", "prod/site-2", cwd=tmp_path)
    assert r.returncode == 1 and "ok prod/site-1" in r.stdout
    assert "FAILED prod/site-2" in r.stderr and "fed_client.json: changed" in r.stderr


def test_start_and_stop_a_relocated_site_kit(prod, env, tmp_path):
    """A kit copied to another host folder runs from there: paths resolve from the script."""
    kit = tmp_path / "elsewhere" / "site-1"
    shutil.copytree(prod / "site-1", kit)
    r = sh(kit / "startup" / "start.sh", "--heartbeat-interval", "2", env=env)
    assert r.returncode == 0, r.stderr
    assert "site-1 started (pid" in r.stdout
    pid = int((kit / "flshell.pid").read_text())
    try:
        assert alive(pid)
        args = json.loads(Path(env["FAKE_ARGS"]).read_text())
        assert args[:2] == ["client", "--startup"] and Path(args[2]).resolve() == kit.resolve()
        assert args[3:] == ["--heartbeat-interval", "2"]
        assert "running client site-1 as client" in (kit / "stdout.log").read_text()

        again = sh(kit / "startup" / "start.sh", env=env)
        assert again.returncode == 1 and "already running" in again.stderr

        r = sh(kit / "startup" / "stop.sh", env=env)
        assert r.returncode == 0 and "site-1 stopped" in r.stdout, r.stderr
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid) and not (kit / "flshell.pid").exists()
        r = sh(kit / "startup" / "stop.sh", env=env)
        assert r.returncode == 0 and "not running" in r.stdout
    finally:
        if alive(pid):
            os.kill(pid, 9)


def test_server_kit_starts_in_the_foreground(prod, env, tmp_path):
    kit = tmp_path / "localhost"
    shutil.copytree(prod / "localhost", kit)
    r = sh(kit / "startup" / "start.sh", "--foreground", env={**env, "FAKE_STAY": ""})
    assert r.returncode == 0, r.stderr
    assert "running server localhost as server" in r.stdout
    args = json.loads(Path(env["FAKE_ARGS"]).read_text())
    assert args[:2] == ["server", "--startup"] and Path(args[2]).resolve() == kit.resolve()


def test_tampered_kit_refuses_to_start_and_says_which_file(prod, env, tmp_path):
    kit = tmp_path / "site-2"
    shutil.copytree(prod / "site-2", kit)
    cfg = kit / "startup" / "fed_client.json"
    data = bytearray(cfg.read_bytes())
    data[data.index(b"site-2") + 5] = ord("3")  # one byte: site-2 -> site-3
    cfg.write_bytes(bytes(data))
    r = sh(kit / "startup" / "start.sh", env=env)
    assert r.returncode == 1
    assert "site-2 did not start" in r.stderr
    assert "fed_client.json: changed" in r.stderr
    assert not (kit / "flshell.pid").exists()


def test_admin_flshell_sh(prod, env, tmp_path):
    r = sh(prod / "lead@hospital-a.org" / "startup" / "flshell.sh", "-c", "list_jobs",
           env={**env, "FAKE_STAY": ""}, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "running admin lead@hospital-a.org as lead" in r.stdout
    args = json.loads(Path(env["FAKE_ARGS"]).read_text())
    assert args[0] == "--startup" and args[2:] == ["-c", "list_jobs"]
    assert Path(args[1]).resolve() == (prod / "lead@hospital-a.org").resolve()
