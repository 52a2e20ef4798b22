"""Job upload archives: pack_job round trips, and unpack_job refusing hostile zips without leaving a trace."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from runtime.jobs import JobError, load_job
from runtime.jobs.upload import UploadError, UploadLimits, pack_job, unpack_job

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-numpy"
STAMP = (2020, 1, 1, 0, 0, 0)
SKIPPED = {"__pycache__", ".git", ".DS_Store"}


# ------------------------------------------------------------------------------------------ helpers


def entry(name: str, *, mode: int = stat.S_IFREG | 0o644, compress: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, STAMP)
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = compress
    return info


def make_zip(items: list[tuple[str | zipfile.ZipInfo, bytes | str]]) -> bytes:
    """A zip with exactly these entries (duplicates allowed), written by hand."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in items:
                zf.writestr(name if isinstance(name, zipfile.ZipInfo) else entry(name), data)
    return buf.getvalue()


def job_files(top: str = "job") -> list[tuple[str, bytes]]:
    """The files of examples/hello-numpy under `top`/."""
    return [(f"{top}/{p.relative_to(EXAMPLE).as_posix()}", p.read_bytes()) for p in sorted(EXAMPLE.rglob("*"))
            if p.is_file() and not SKIPPED & set(p.parts) and p.suffix != ".pyc"]


def central_header(data: bytes, name: str) -> int:
    """Offset of the central-directory record of entry `name`."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46: at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"no central record for {name}")


def local_header(data: bytes, name: str) -> int:
    return struct.unpack_from("<L", data, central_header(data, name) + 42)[0]


def patch(data: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def tree(root: Path) -> list[tuple[str, int]]:
    """Everything under root (names, plus sizes of files), symlinks not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            out.append((rel, -1 if path.is_dir() and not path.is_symlink() else path.lstat().st_size))
    return sorted(out)


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    """tmp_path/area/staging, with something already in staging and next to it."""
    area = tmp_path / "area"
    (area / "staging" / "earlier-upload" / "job").mkdir(parents=True)
    (area / "staging" / "earlier-upload" / "job" / "meta.json").write_text("{}")
    (area / "neighbour.txt").write_text("keep me")
    return area / "staging"


def rejected(data: bytes, staging: Path, match: str, limits: UploadLimits | None = None,
             exc: type[Exception] = UploadError) -> Exception:
    """unpack_job must raise `exc` matching `match` and leave every file under tmp_path as it was."""
    root = staging.parent.parent  # tmp_path: staging, its parent, and anything a traversal could reach
    before = tree(root)
    with pytest.raises(exc, match=match) as info:
        unpack_job(data, staging, limits or UploadLimits())
    assert tree(root) == before
    return info.value


# ---------------------------------------------------------------------------------------- round trips


def test_pack_unpack_round_trip(staging: Path) -> None:
    data = pack_job(EXAMPLE)
    job_dir = unpack_job(data, staging)
    assert job_dir.name == "hello-numpy"
    assert job_dir.parent.parent == staging.absolute()
    assert load_job(job_dir).name == load_job(EXAMPLE).name == "hello-numpy"
    expected = {name.split("/", 1)[1]: body for name, body in job_files("hello-numpy")}
    got = {p.relative_to(job_dir).as_posix(): p.read_bytes() for p in job_dir.rglob("*") if p.is_file()}
    assert got == expected
    for path in job_dir.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert stat.S_IMODE(job_dir.parent.stat().st_mode) == 0o755


def test_pack_layout_and_determinism(tmp_path: Path) -> None:
    data = pack_job(EXAMPLE)
    assert pack_job(EXAMPLE) == data
    copy = tmp_path / "hello-numpy"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    assert pack_job(copy) == data  # same content, other mtimes and location: same bytes
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert all(n.startswith("hello-numpy/") for n in names)
        assert "hello-numpy/meta.json" in names and "hello-numpy/app/config/" in names
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.compress_type for i in zf.infolist() if not i.is_dir()} == {zipfile.ZIP_DEFLATED}


def test_pack_skips_caches_and_vcs(tmp_path: Path, staging: Path) -> None:
    job = tmp_path / "myjob"
    shutil.copytree(EXAMPLE, job)
    for junk in ("app/custom/__pycache__/client.cpython-311.pyc", "app/custom/stale.pyc", ".git/config",
                 ".DS_Store", "app/.DS_Store"):
        (job / junk).parent.mkdir(parents=True, exist_ok=True)
        (job / junk).write_bytes(b"junk")
    with zipfile.ZipFile(io.BytesIO(pack_job(job))) as zf:
        names = zf.namelist()
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".git" in n or "DS_Store" in n]
    assert "myjob/app/custom/client.py" in names
    assert load_job(unpack_job(pack_job(job), staging)).name == "hello-numpy"  # meta.json names it


def test_pack_bare_app_folder(staging: Path) -> None:
    job_dir = unpack_job(pack_job(EXAMPLE / "app"), staging)
    assert job_dir.name == "app" and load_job(job_dir).name == "app"


def test_unpack_accepts_a_stream_and_creates_staging(tmp_path: Path) -> None:
    job_dir = unpack_job(io.BytesIO(pack_job(EXAMPLE)), tmp_path / "new" / "staging")
    assert load_job(job_dir).name == "hello-numpy"


def test_pack_stores_incompressible_big_files_so_they_pass_the_ratio_check(tmp_path: Path, staging: Path) -> None:
    job = tmp_path / "weights-job"
    shutil.copytree(EXAMPLE, job)
    zeros = bytes(2 * 1024 * 1024)
    (job / "app" / "custom" / "init.npy").write_bytes(zeros)
    data = pack_job(job)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.getinfo("weights-job/app/custom/init.npy").compress_type == zipfile.ZIP_STORED
    assert (unpack_job(data, staging) / "app" / "custom" / "init.npy").read_bytes() == zeros


def test_pack_refuses_symlinks(tmp_path: Path) -> None:
    job = tmp_path / "linked"
    shutil.copytree(EXAMPLE, job)
    (job / "app" / "custom" / "secret").symlink_to("/etc/passwd")
    with pytest.raises(UploadError, match=r"linked/app/custom/secret.*symbolic link"):
        pack_job(job)
    (job / "app" / "custom" / "secret").unlink()
    (job / "data").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UploadError, match="symbolic link") as info:
        pack_job(job)
    assert info.value.entry == "linked/data"


def test_pack_refuses_big_folders_and_bad_names(tmp_path: Path) -> None:
    job = tmp_path / "big"
    shutil.copytree(EXAMPLE, job)
    (job / "app" / "custom" / "blob.bin").write_bytes(b"x" * 5000)
    with pytest.raises(UploadError, match="more than 4.9 KiB"):
        pack_job(job, max_bytes=5000)
    (job / "app" / "custom" / "Blob.bin").write_bytes(b"y")
    with pytest.raises(UploadError, match="letter case"):
        pack_job(job)
    (job / "app" / "custom" / "Blob.bin").unlink()
    (job / "app" / "custom" / "a\\b.py").write_bytes(b"")
    with pytest.raises(UploadError, match="backslash"):
        pack_job(job)
    with pytest.raises(UploadError, match="does not exist"):
        pack_job(tmp_path / "missing")
    with pytest.raises(UploadError, match="not a folder"):
        pack_job(EXAMPLE / "meta.json")


# ------------------------------------------------------------------------------------ path traversal


@pytest.mark.parametrize("name, match", [
    ("../x", r'"\.\." path component'),
    ("job/../../x", r'"\.\." path component'),
    ("job/a/../../../x", r'"\.\." path component'),
    ("job/./x", r'"\." path component'),
    ("/etc/x", "absolute path"),
    ("C:\\x", "absolute path"),
    ("C:/x", "absolute path"),
    ("c:x", "absolute path"),
    ("\\\\server\\share\\x", "absolute path"),
    ("\\x", "absolute path"),
    ("job\\..\\..\\x", "backslash"),
    ("job/a\\b", "backslash"),
    ("job//x", "empty path component"),
    ("job/a\nb", "control character"),
    ("job/a\x7fb", "control character"),
    ("job/a:b", "colon"),
    ("job/" + "a" * 300, "over the limit of 255"),
])
def test_hostile_names(staging: Path, name: str, match: str) -> None:
    data = make_zip([*job_files(), (name, b"pwned")])
    err = rejected(data, staging, match)
    assert err.entry == name and json.dumps(name)[:100] in str(err)  # named, escaped (long names cut short)


def test_absolute_path_into_tmp(staging: Path) -> None:
    target = staging.parent / "outside.txt"
    rejected(make_zip([*job_files(), (str(target), b"pwned")]), staging, "absolute path")
    assert not target.exists()


def test_nul_in_name(staging: Path) -> None:
    data = make_zip([*job_files(), ("job/evil.pyX.txt", b"pwned")])
    data = data.replace(b"evil.pyX.txt", b"evil.py\0.txt")  # local and central headers alike
    err = rejected(data, staging, "control character")
    assert err.entry == "job/evil.py\0.txt" and "\\u0000" in str(err)


# ------------------------------------------------------------------------------------ entry types


def test_symlink_entry(staging: Path) -> None:
    link = entry("job/app/custom/passwd", mode=stat.S_IFLNK | 0o777)
    rejected(make_zip([*job_files(), (link, "/etc/passwd")]), staging, "symbolic link")


def test_special_file_entries(staging: Path) -> None:
    fifo = entry("job/fifo", mode=stat.S_IFIFO | 0o644)
    rejected(make_zip([*job_files(), (fifo, b"")]), staging, "not a regular file")
    device = entry("job/dev", mode=stat.S_IFCHR | 0o644)
    rejected(make_zip([*job_files(), (device, b"")]), staging, "not a regular file")
    reparse = entry("job/junction")
    reparse.external_attr |= 0x400
    rejected(make_zip([*job_files(), (reparse, b"")]), staging, "reparse point")
    sneaky_dir = entry("job/notadir", mode=stat.S_IFDIR | 0o755)
    rejected(make_zip([*job_files(), (sneaky_dir, b"")]), staging, "marked as a folder")


def test_encrypted_entry(staging: Path) -> None:
    data = make_zip(job_files())
    name = "job/meta.json"
    flag = struct.unpack_from("<H", data, central_header(data, name) + 8)[0]
    data = patch(data, local_header(data, name) + 6, "<H", flag | 1)
    data = patch(data, central_header(data, name) + 8, "<H", flag | 1)
    rejected(data, staging, "encrypted")


# -------------------------------------------------------------------------------------- layout


def test_duplicate_names(staging: Path) -> None:
    rejected(make_zip([*job_files(), ("job/meta.json", b"{}")]), staging, "duplicate entry name")
    rejected(make_zip([*job_files(), ("job/META.json", b"{}")]), staging, "differs only in letter case")
    rejected(make_zip([*job_files(), ("job/APP/x.py", b"")]), staging, "differ only in letter case")
    rejected(make_zip([*job_files(), ("job/me\u0301ta", b""), ("job/m\u00e9ta", b"")]), staging,
             "Unicode form")
    rejected(make_zip([*job_files(), ("job/meta.json/x", b"")]), staging, "both a file and a folder")
    rejected(make_zip([*job_files(), (entry("job/meta.json/", mode=stat.S_IFDIR | 0o755), b"")]), staging,
             "both a file and a folder")


def test_entries_outside_one_top_folder(staging: Path) -> None:
    rejected(make_zip([*job_files("a"), *job_files("b")]), staging, r"one single top folder \(found a/, b/\)")
    rejected(make_zip([*job_files(), ("README.md", b"hi")]), staging, "one single top folder")
    rejected(make_zip([("meta.json", b"{}")]), staging, "file at the top of the archive")
    rejected(make_zip([]), staging, "archive is empty")


# ------------------------------------------------------------------------------------------ sizes


def test_zip_bomb_ratio(staging: Path) -> None:
    bomb = bytes(10 * 1024 * 1024)  # 10 MiB of zeros deflate to ~10 KiB: about 1000:1
    err = rejected(make_zip([*job_files(), ("job/app/custom/bomb.bin", bomb)]), staging, "compression ratio")
    assert err.entry == "job/app/custom/bomb.bin" and "a zip bomb" in str(err)


def test_small_compressible_files_are_exempt_from_the_ratio_check(staging: Path) -> None:
    blank = b" " * 100_000  # ~1000:1, but far below ratio_min_bytes
    job_dir = unpack_job(make_zip([*job_files(), ("job/app/custom/blank.txt", blank)]), staging)
    assert (job_dir / "app" / "custom" / "blank.txt").read_bytes() == blank


def test_total_uncompressed_size(staging: Path) -> None:
    limits = UploadLimits(max_total_bytes=64 * 1024)
    data = make_zip([*job_files(), ("job/a.bin", os.urandom(40_000)), ("job/b.bin", os.urandom(40_000))])
    err = rejected(data, staging, "exceed 64 KiB", limits)
    assert err.entry == "job/b.bin"


def test_upload_size_cap(staging: Path) -> None:
    data = make_zip([*job_files(), ("job/noise.bin", os.urandom(5000))])
    limits = UploadLimits(max_upload_bytes=4096)
    rejected(data, staging, "over the 4 KiB limit", limits)
    rejected(io.BytesIO(data), staging, "over the 4 KiB limit", limits)  # a stream is read only to the cap + 1


def test_too_many_entries(staging: Path) -> None:
    data = make_zip([*job_files(), *[(f"job/data/{i}.txt", b"") for i in range(10)]])
    rejected(data, staging, "over the limit of 5", UploadLimits(max_entries=5))
    # the count in the end record can lie; the parsed directory is counted again
    end = data.rfind(b"PK\x05\x06")
    lying = patch(patch(data, end + 8, "<H", 1), end + 10, "<H", 1)
    rejected(lying, staging, "archive has 15 entries, over the limit of 5", UploadLimits(max_entries=5))


def test_declared_size_smaller_than_data(staging: Path) -> None:
    """A header that under-declares the size cannot write more than it declared (and the CRC then fails)."""
    name = "job/app/custom/payload.bin"
    data = make_zip([*job_files(), (name, b"A" * 50_000)])
    data = patch(data, central_header(data, name) + 24, "<L", 100)
    rejected(data, staging, r'"job/app/custom/payload.bin": (corrupt entry data|holds more data)')


def test_declared_size_smaller_than_data_stored(staging: Path) -> None:
    name = "job/app/custom/payload.bin"
    data = make_zip([*job_files(), (entry(name, compress=zipfile.ZIP_STORED), b"A" * 50_000)])
    data = patch(data, central_header(data, name) + 24, "<L", 100)
    rejected(data, staging, "corrupt entry data|holds more data")


def test_byte_budget_does_not_trust_the_decoder(staging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if the zip reader produced more than the declared size, extraction stops at the budget."""
    name = "job/app/custom/payload.bin"
    data = make_zip([*job_files(), (name, b"A" * 1000)])
    real_open = zipfile.ZipFile.open

    def overproducing_open(self, member, *args, **kwargs):
        if getattr(member, "filename", member) == name:
            return io.BytesIO(b"A" * 10_000_000)
        return real_open(self, member, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", overproducing_open)
    rejected(data, staging, "holds more data than its declared size of 1000 bytes")


def test_declared_size_larger_than_data(staging: Path) -> None:
    name = "job/app/custom/payload.bin"
    data = make_zip([*job_files(), (name, b"A" * 50_000)])
    data = patch(data, central_header(data, name) + 24, "<L", 60_000)
    rejected(data, staging, "less than its declared size of 60000")


# --------------------------------------------------------------------------------------- corruption


def test_not_a_zip(staging: Path) -> None:
    rejected(b"this is not a zip file", staging, "not a zip archive")
    rejected(b"", staging, "not a zip archive")
    good = make_zip(job_files())
    rejected(good[: len(good) // 2], staging, "not a zip archive")


def test_corrupt_entry_data_after_files_were_written(staging: Path) -> None:
    """Corruption found mid-extraction removes what was already extracted."""
    name = "job/zz-last.bin"
    data = make_zip([*job_files(), (name, os.urandom(2000) + b"B" * 20_000)])
    start = local_header(data, name) + 30 + len(name) + 10
    data = data[:start] + bytes(64) + data[start + 64:]
    rejected(data, staging, r'"job/zz-last.bin": corrupt entry data')


def test_invalid_job_is_removed(staging: Path) -> None:
    files = [(n, b"{not json" if n == "job/meta.json" else body) for n, body in job_files()]
    rejected(make_zip(files), staging, "meta.json", exc=JobError)
    files = [(n, body) for n, body in job_files() if "config_server" not in n]
    rejected(make_zip(files), staging, "config_server.json", exc=JobError)


# ------------------------------------------------------------------------------------------- API


def test_upload_error_and_limits() -> None:
    err = UploadError("bad thing", "job/x")
    assert isinstance(err, ValueError) and str(err) == 'entry "job/x": bad thing'
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.entry, str(again)) == (err.reason, err.entry, str(err))
    assert str(UploadError("whole archive")) == "whole archive"
    limits = UploadLimits()
    assert (limits.max_upload_bytes, limits.max_total_bytes, limits.max_entries, limits.max_ratio,
            limits.max_name_length) == (64 << 20, 512 << 20, 10_000, 100.0, 255)
    with pytest.raises(ValueError, match="max_entries"):
        UploadLimits(max_entries=0)
    with pytest.raises(ValueError, match="max_ratio"):
        UploadLimits(max_ratio=0.5)
