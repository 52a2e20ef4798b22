"""Hostile job archives against a real admin port: a ServerEngine, JobStore and JobManager behind
the AdminServer on 127.0.0.1, driven through runtime.admin.Session.submit_archive.

Every archive below is a valid job (hello-numpy, packed by pack_job) plus one bad entry, so it is
the bad entry and nothing else that gets it refused. Each refusal must raise BadUpload naming the
reason and the entry, store no job, leave the server's staging folder empty, and write nothing
anywhere else: every file and folder under tmp_path (which holds the server workspace) is
snapshotted before and after.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.admin import BadUpload, Session
from runtime.jobs.upload import UploadLimits, pack_job
from runtime.server.admin_service import AdminServer
from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"
TOP = "hello-numpy"  # pack_job names the archive's top folder after the job folder

KiB = 1024
MiB = 1024 * KiB
# Small caps keep the oversized archives small: the JobManager's unpack_job refuses archives over
# MANAGER_CAP, the admin port refuses streams over ADMIN_CAP before the manager sees them.
MANAGER_CAP = 256 * KiB
ADMIN_CAP = 512 * KiB
BOMB_BYTES = 200 * MiB  # zeros: deflate packs them ~1000:1, about 200 KB (under MANAGER_CAP)


# ------------------------------------------------------------------------------------ archives


def _hello_entries() -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(pack_job(HELLO))) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _archive(*extra: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    """hello-numpy as pack_job makes it, plus `extra` entries written exactly as given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in [*_hello_entries(), *extra]:
            zf.writestr(info, data)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _bomb() -> bytes:
    """A valid-looking job whose custom/ holds BOMB_BYTES of zeros, deflated (~1000:1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in _hello_entries():
            zf.writestr(info, data)
        info = zipfile.ZipInfo(f"{TOP}/app/custom/weights.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        with zf.open(info, "w") as f:
            zeros = bytes(MiB)
            for _ in range(BOMB_BYTES // MiB):
                f.write(zeros)
    return buf.getvalue()


def _padded(size: int) -> bytes:
    """A valid job over `size` bytes: hello-numpy plus incompressible data, stored."""
    info = zipfile.ZipInfo(f"{TOP}/app/custom/data.bin")
    info.compress_type = zipfile.ZIP_STORED
    data = _archive((info, os.urandom(size)))
    assert len(data) > size
    return data


# -------------------------------------------------------------------------------------- server


@pytest.fixture
def server(tmp_path):
    engine = ServerEngine(tmp_path / "server")
    manager = JobManager(engine, schedule_interval=0.1,
                         upload_limits=UploadLimits(max_upload_bytes=MANAGER_CAP)).start()
    admin = AdminServer(manager, max_upload_bytes=ADMIN_CAP).start()
    try:
        with Session(admin.address, user="mallory", timeout=10) as session:
            yield SimpleNamespace(engine=engine, manager=manager, admin=admin, session=session,
                                  staging=tmp_path / "server" / "staging", root=tmp_path)
    finally:
        admin.stop(0)
        manager.stop(abort_running=True, timeout=10)
        engine.close()


def _snapshot(root: Path, staging: Path) -> dict[str, tuple]:
    """Every file and folder under `root` but the staging folder's contents: path -> (kind, size, mtime)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if staging in path.parents:
                continue
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            out[str(path.relative_to(root))] = (kind, None if stat.S_ISDIR(kind) else st.st_size,
                                                None if stat.S_ISDIR(kind) else st.st_mtime_ns)
    return out


def _named(root: Path, name: str) -> list[Path]:
    return [Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs if n == name]


def _refused(server, data: bytes, *, reason: str, entry: str | None, outside: list[Path] = ()) -> None:
    """submit_archive(data) raises BadUpload naming `reason` (a regex) and `entry`, and leaves no trace."""
    assert server.session.list_jobs() == []
    before = _snapshot(server.root, server.staging)
    existed = {p: p.exists() for p in outside}
    with pytest.raises(BadUpload) as caught:
        server.session.submit_archive(data)
    message = str(caught.value)
    assert re.search(reason, message), message
    if entry is not None:
        assert f'entry "{entry}"' in message, message
    assert server.session.list_jobs() == []
    staged = sorted(server.staging.iterdir()) if server.staging.exists() else []
    assert staged == [], f"staging leftovers: {staged}"
    assert _snapshot(server.root, server.staging) == before
    assert _named(server.root, "x") == []
    for path in outside:
        assert path.exists() == existed[path], path


# --------------------------------------------------------------------------------------- tests


def test_a_valid_archive_is_stored(server):
    """The control: the same job with nothing added is accepted, and its staging copy removed."""
    job_id = server.session.submit_archive(_archive())
    assert [j["job_id"] for j in server.session.list_jobs()] == [job_id]
    assert server.session.get_job(job_id)["submitter"] == "mallory"
    assert not server.staging.exists() or list(server.staging.iterdir()) == []


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_dot_dot_entry(server, depth):
    # from staging/<uuid>/hello-numpy/: depth 1 lands in staging/<uuid>, 4 in tmp_path itself
    name = f"{TOP}/" + "../" * depth + "x"
    _refused(server, _archive((name, b"boom")), reason=r'"\.\." path component; entries may not point outside',
             entry=name)


@pytest.mark.parametrize("make_name", [
    lambda root: str(root / "x"),                  # absolute, aimed at the test's own folder
    lambda root: str(root / "server" / "x"),       # ... and at the server workspace
    lambda root: "\\etc\\x",
], ids=["tmp_path", "workspace", "backslash"])  # never aimed at system folders: CI runs as root
def test_absolute_entry(server, make_name):
    name = make_name(server.root)
    outside: list[Path] = []
    _refused(server, _archive((name, b"boom")),
             reason="absolute path; entries must be relative paths under the job's top folder",
             entry=name.replace("\\", "\\\\"), outside=outside)  # the message shows names JSON-escaped


@pytest.mark.parametrize("name, reason", [
    (f"{TOP}//etc/x", r'empty path component \("//"'),
    (f"{TOP}/app//x", r'empty path component \("//"'),
    ("C:/x", r"absolute path"),
    (f"{TOP}/C:x", r"colon in name"),
    (f"{TOP}\\..\\x", r"backslash in name"),
])
def test_absolute_like_entry(server, name, reason):
    _refused(server, _archive((name, b"boom")), reason=reason, entry=name.replace("\\", "\\\\"))


@pytest.mark.parametrize("target", ["../../../../x", "/etc/passwd"])
def test_symlink_entry(server, target):
    name = f"{TOP}/app/custom/x"
    _refused(server, _archive(_symlink(name, target)), reason="symbolic link entries are not accepted", entry=name)


def test_zip_bomb(server):
    data = _bomb()
    assert len(data) < MANAGER_CAP  # small enough to pass the size caps: the ratio check refuses it
    _refused(server, data, reason=r"compression ratio \d+:1 \(200 MiB from \d+ bytes\) is over the 100:1 limit "
                                  r"\(max_ratio\); a zip bomb\?",
             entry=f"{TOP}/app/custom/weights.bin")


def test_over_the_job_managers_size_cap(server):
    data = _padded(MANAGER_CAP + 16 * KiB)
    assert len(data) < ADMIN_CAP
    _refused(server, data, reason=r"upload is [\d.]+ KiB, over the 256 KiB limit \(max_upload_bytes\)", entry=None)


def test_over_the_admin_ports_size_cap(server):
    data = _padded(ADMIN_CAP + 16 * KiB)
    _refused(server, data, reason=rf"the job archive is over {ADMIN_CAP} bytes, the server's limit "
                                  r"\(max_upload_bytes\)", entry=None)


def test_refusals_leave_the_server_usable(server):
    """After a run of refusals the same session still submits, and only that job is stored."""
    for data in (_archive((f"{TOP}/../x", b"boom")), _archive(_symlink(f"{TOP}/x", "/etc/passwd")),
                 _padded(ADMIN_CAP)):
        with pytest.raises(BadUpload):
            server.session.submit_archive(data)
    job_id = server.session.submit_archive(_archive())
    assert [j["job_id"] for j in server.session.list_jobs()] == [job_id]
    assert list(server.staging.iterdir()) == []
    assert _named(server.root, "x") == []


def test_a_meta_json_nested_100000_deep_is_an_invalid_job_naming_the_file(server):
    from runtime.admin import InvalidJob

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in _hello_entries():
            zf.writestr(info, b"[" * 100_000 + b"]" * 100_000 if info.filename.endswith("meta.json")
                        else data)
    with pytest.raises(InvalidJob, match="meta.json.*nest too deeply"):
        server.session.submit_archive(buf.getvalue())
    assert server.session.list_jobs() == []  # nothing stored
