"""Project -> root CA, certificates and one signed startup kit per participant."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from provisioning import certs, scripts
from provisioning.kit import CA_FILE, sign_startup
from provisioning.policy import write_policy
from provisioning.project import Participant, Project

CA_DIR = "ca"
CA_KEY_FILE = "rootCA.key"
DEFAULT_RESOURCES = {"max_jobs": 2, "heartbeat_interval": 5.0}  # keys as ServerConfig's


class ProvisionError(Exception):
    """Provisioning could not write its output (e.g. the folder is not empty)."""


def provision(project: Project, out_dir: str | Path, *, force: bool = False) -> dict[str, Path]:
    """Write the CA and every participant's kit under `out_dir`; {participant name: kit dir}.

    `out_dir` must be missing or empty unless `force`, which replaces `ca/` and the kits of
    this project's participants there (other entries are left alone). Everything is built in
    a sibling folder first, so a failure leaves `out_dir` as it was.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ProvisionError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ProvisionError(f"{out}: not empty; choose another folder, or use --force to "
                             f"replace its CA and kits")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.provision-", dir=out.parent))
    try:
        _build(project, staging)
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {p.name: out / p.name for p in project.participants}


def _install(staging: Path, out: Path) -> None:
    if not out.exists() or not any(out.iterdir()):
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        out.chmod(0o755)  # mkdtemp made it 0700; the secrets inside are 0600 / 0700 themselves
        return
    for entry in sorted(staging.iterdir()):
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_script(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def _write_run_scripts(startup: Path, project: str, name: str, command: str) -> None:
    _write_script(startup / "start.sh", scripts.start_script(project, name, command))
    _write_script(startup / "stop.sh", scripts.stop_script(project, name, command))


def _build(project: Project, root: Path) -> None:
    ca_key = certs.new_key(project.key_type)
    ca_cert = certs.make_ca(project.name, ca_key, project.validity_days)
    ca_dir = root / CA_DIR
    ca_dir.mkdir(mode=0o700)
    ca_dir.chmod(0o700)
    ca_pem = certs.cert_pem(ca_cert)
    (ca_dir / CA_FILE).write_bytes(ca_pem)
    certs.write_private(ca_dir / CA_KEY_FILE, certs.key_pem(ca_key))
    server = project.server
    for p in project.participants:
        kit = root / p.name
        startup, local = kit / "startup", kit / "local"
        startup.mkdir(parents=True)
        if p.type != "admin":
            local.mkdir()
        key = certs.new_key(project.key_type)
        cert = _issue(project, p, ca_cert, ca_key, key)
        stem = "server" if p.type == "server" else "client"
        (startup / f"{stem}.crt").write_bytes(certs.cert_pem(cert))
        certs.write_private(startup / f"{stem}.key", certs.key_pem(key))
        (startup / CA_FILE).write_bytes(ca_pem)
        if p.type == "server":
            # the project's sites and admins: a certificate of this CA naming anyone else
            # (signed outside provisioning) is refused by the server
            _write_json(startup / "fed_server.json", {
                "project": project.name, "name": p.name, "host": p.host,
                "fl_port": p.fl_port, "admin_port": p.admin_port, "role": "server",
                "sites": [c.name for c in project.clients],
                "admins": [a.name for a in project.admins]})
            _write_run_scripts(startup, project.name, p.name, "server")
            write_policy(local / "authorization.json")
            _write_json(local / "resources.json", DEFAULT_RESOURCES)
        elif p.type == "client":
            _write_json(startup / "fed_client.json", {
                "project": project.name, "name": p.name, "org": p.org,
                "server": f"{server.name}:{server.fl_port}", "role": "client"})
            _write_run_scripts(startup, project.name, p.name, "client")
            _write_json(local / "site_policy.json", {"allow_custom_code": p.allow_custom_code})
        else:
            _write_json(startup / "fed_admin.json", {
                "project": project.name, "name": p.name, "org": p.org, "role": p.role,
                "server": f"{server.name}:{server.admin_port}"})
            _write_script(startup / "flshell.sh",
                          scripts.admin_script(project.name, p.name, p.org, p.role))
        sign_startup(startup, ca_key)


def _issue(project: Project, p: Participant, ca_cert: Any, ca_key: certs.PrivateKey,
           key: certs.PrivateKey) -> Any:
    common = {"days": project.validity_days}
    if p.type == "server":
        dns, ips = certs.server_sans(p.name, p.host, p.host_names)
        return certs.issue_cert(ca_cert, ca_key, key.public_key(), cn=p.name, org=p.org,
                                ou=certs.SERVER_ROLE, server=True, dns_names=dns,
                                ip_addresses=ips, **common)
    if p.type == "client":
        return certs.issue_cert(ca_cert, ca_key, key.public_key(), cn=p.name, org=p.org,
                                ou=certs.CLIENT_ROLE, **common)
    return certs.issue_cert(ca_cert, ca_key, key.public_key(), cn=p.name, org=p.org, ou=p.role,
                            emails=(p.name,), **common)
