"""Job uploads: pack a job folder into a zip, and unpack an untrusted zip safely into a staging folder.

The format is a plain zip (deflate or stored) whose entries all sit under one top folder named like the
job folder: ``hello-numpy/meta.json``, ``hello-numpy/app/config/config_server.json``, ...

``unpack_job`` treats the archive as hostile. It checks every entry (names, types, sizes, compression
ratios, duplicates, layout) before it writes anything, then extracts into a fresh ``<staging>/<uuid>/``
folder with a byte budget per entry, opening every folder and file relative to a folder it just created
without following symlinks. Any failure removes that folder, so ``staging_dir`` is left as it was found.
POSIX only (it relies on ``dir_fd`` and ``O_NOFOLLOW``), like the server that calls it.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import struct
import sys
import unicodedata
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from .loader import load_job

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 512 * MiB
"""pack_job refuses folders whose files add up to more than this (the server's default max_total_bytes)."""

SKIP_NAMES = frozenset({"__pycache__", ".git", ".DS_Store"})
SKIP_SUFFIXES = (".pyc", ".pyo")
NAME_MAX = 255  # bytes in one path component (UTF-8), the limit of common filesystems
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
DIR_MODE = 0o755
CHUNK = 1 << 16

_SUPPORTED = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
              zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_PATCHED_DATA = 0x0020
_DOS_DIRECTORY = 0x10
_DOS_REPARSE_POINT = 0x400  # Windows symlinks and junctions
_DRIVE = re.compile(r"[A-Za-z]:")
_EOCD = struct.Struct("<4s4H2LH")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UploadError(ValueError):
    """An upload was refused: `reason`, and the archive `entry` at fault (None for the whole archive)."""

    def __init__(self, reason: str, entry: str | None = None) -> None:
        self.reason = reason
        self.entry = entry
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"entry {_show(self.entry)}: {self.reason}" if self.entry is not None else self.reason

    def __reduce__(self):  # keep attributes across pickling (e.g. process pools)
        return (type(self), (self.reason, self.entry))


@dataclass(frozen=True)
class UploadLimits:
    """Bounds that unpack_job enforces on an uploaded job archive (all sizes in bytes)."""

    max_upload_bytes: int = 64 * MiB
    """Largest accepted archive, as uploaded (compressed). Checked before the zip is even parsed."""
    max_total_bytes: int = 512 * MiB
    """Largest sum of the entries' uncompressed sizes, i.e. what extraction may write to disk."""
    max_entries: int = 10_000
    """Most entries (files and folders) in the archive."""
    max_ratio: float = 100.0
    """Highest uncompressed:compressed ratio of one entry (zip bombs reach 1000:1 and more). Only entries
    larger than `ratio_min_bytes` are checked: small, very compressible files (blank configs, padding)
    are common and harmless, and max_total_bytes bounds them anyway."""
    max_name_length: int = 255
    """Longest entry name, in characters, counting the whole path (``job/app/custom/x.py``). Each path
    component is also limited to 255 UTF-8 bytes, the limit of common filesystems."""
    ratio_min_bytes: int = 1 * MiB
    """Entries of at most this many (uncompressed) bytes are exempt from the max_ratio check."""

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_total_bytes", "max_entries", "max_name_length", "ratio_min_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "ratio_min_bytes" else 1):
                what = "a non-negative" if name == "ratio_min_bytes" else "a positive"
                raise ValueError(f"UploadLimits.{name}: expected {what} integer, got {value!r}")
        if not isinstance(self.max_ratio, (int, float)) or isinstance(self.max_ratio, bool) or not self.max_ratio >= 1:
            raise ValueError(f"UploadLimits.max_ratio: expected a number >= 1, got {self.max_ratio!r}")


class _Entry(NamedTuple):
    info: zipfile.ZipInfo
    name: str
    parts: tuple[str, ...]  # path components, the top folder first
    is_dir: bool


# ----------------------------------------------------------------------------------------------- pack


def pack_job(folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Zip a job folder (or bare app folder) for upload and return the archive's bytes.

    Entries are POSIX paths under one top folder named like `folder`, sorted, with fixed timestamps and
    modes, so the same folder always packs to the same bytes. ``__pycache__``, ``*.pyc``, ``.git`` and
    ``.DS_Store`` are skipped. Raises UploadError for a missing folder, a symlink or special file inside
    it, names the server would refuse, or files adding up to more than `max_bytes`.
    """
    shown = str(folder)
    root = Path(folder)
    if not root.exists():
        raise UploadError(f'job folder "{shown}" does not exist')
    if not root.is_dir():
        raise UploadError(f'"{shown}" is not a folder; pack_job expects a job folder (or an app folder)')
    top = os.path.basename(os.path.abspath(root))
    if not top or top in (".", ".."):
        raise UploadError(f'cannot name the archive\'s top folder after "{shown}"')
    dirs: list[str] = [top]
    files: list[tuple[str, Path]] = []
    total = 0
    for rel, path, is_dir, size in _walk(root, top):
        if is_dir:
            dirs.append(rel)
        else:
            files.append((rel, path))
            total += size
            if total > max_bytes:
                raise UploadError(f'job folder "{shown}" holds more than {_size(max_bytes)} of files '
                                  f"(reached at {rel}); remove data the job does not need, or pass max_bytes")
    names = sorted([(d + "/", None) for d in dirs] + files, key=lambda item: item[0])
    limits = UploadLimits(max_upload_bytes=sys.maxsize, max_total_bytes=max(max_bytes, 1), max_entries=sys.maxsize)
    # Check names the same way the server will, so a folder that packs is one that unpacks.
    _check_layout([_Entry(zipfile.ZipInfo(n), n, *_parse_name(n, limits)) for n, _ in names])

    buf = io.BytesIO()
    written = 0
    with zipfile.ZipFile(buf, "w") as zf:
        for name, path in names:
            info = zipfile.ZipInfo(name, FIXED_DATE)
            info.create_system = 3  # Unix, so the mode bits below are meaningful
            if path is None:
                info.external_attr = ((stat.S_IFDIR | DIR_MODE) << 16) | _DOS_DIRECTORY
                info.compress_type = zipfile.ZIP_STORED
                zf.writestr(info, b"")
                continue
            info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
            with _open_regular(path, name) as src:
                size = os.fstat(src.fileno()).st_size
                info.file_size = size
                info.compress_type = _pick_compression(src, size)
                src.seek(0)
                with zf.open(info, "w") as dst:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UploadError(f'job folder "{shown}" holds more than {_size(max_bytes)} of files '
                                              f"(reached at {name}; did it grow while packing?)")
                        dst.write(chunk)
    return buf.getvalue()


def _walk(root: Path, top: str):
    """Yield (archive name, path, is_dir, size) below `root`, refusing symlinks and special files."""
    with os.scandir(root) as it:
        items = sorted(it, key=lambda e: e.name)
    for item in items:
        if item.name in SKIP_NAMES or item.name.endswith(SKIP_SUFFIXES):
            continue
        rel = f"{top}/{item.name}"
        path = Path(item.path)
        if item.is_symlink():
            raise UploadError(f"{path} is a symbolic link; job uploads may not contain links "
                              "(copy the target into the job folder instead)", rel)
        if item.is_dir(follow_symlinks=False):
            yield rel, path, True, 0
            yield from _walk(path, rel)
        elif item.is_file(follow_symlinks=False):
            yield rel, path, False, item.stat(follow_symlinks=False).st_size
        else:
            raise UploadError(f"{path} is not a regular file or folder (device, pipe or socket)", rel)


def _open_regular(path: Path, name: str) -> BinaryIO:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        raise UploadError(f"cannot read {path}: {exc.strerror or exc}", name) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UploadError(f"{path} is no longer a regular file", name)
    return os.fdopen(fd, "rb")


def _pick_compression(src: BinaryIO, size: int) -> int:
    """Deflate, unless the server's ratio check would refuse the result (e.g. an all-zero weights file)."""
    default = UploadLimits()
    if size <= default.ratio_min_bytes:
        return zipfile.ZIP_DEFLATED
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)  # what zipfile uses
    packed = 0
    while chunk := src.read(CHUNK):
        packed += len(comp.compress(chunk))
    packed += len(comp.flush())
    return zipfile.ZIP_STORED if size > default.max_ratio / 2 * max(packed, 1) else zipfile.ZIP_DEFLATED


# --------------------------------------------------------------------------------------------- unpack


def unpack_job(data: bytes | bytearray | memoryview | BinaryIO, staging_dir: str | Path,
               limits: UploadLimits = UploadLimits()) -> Path:
    """Validate an uploaded job archive, extract it into a fresh ``staging_dir/<uuid>/`` and return the job
    folder (``staging_dir/<uuid>/<top>``) after ``load_job`` accepted it.

    Raises UploadError (a ValueError naming the entry and the reason) for anything unsafe or over
    `limits`, and lets load_job's JobError through for an invalid job. In every failure case the
    ``<uuid>`` folder is removed, so ``staging_dir`` holds what it held before. `staging_dir` is created
    if missing.
    """
    raw = _read_upload(data, limits)
    zf = _open_zip(raw, limits)
    with zf:
        entries = _validate(zf, limits)
        staging = Path(staging_dir).absolute()
        staging.mkdir(parents=True, exist_ok=True)
        work = staging / uuid.uuid4().hex
        os.mkdir(work, 0o700)  # private while extracting; opened up once the job is accepted
        try:
            _extract(zf, entries, work)
            job_dir = work / entries[0].parts[0]
            load_job(job_dir)
            os.chmod(work, DIR_MODE)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return job_dir


def _read_upload(data: bytes | bytearray | memoryview | BinaryIO, limits: UploadLimits) -> bytes:
    cap = limits.max_upload_bytes
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif hasattr(data, "read"):
        raw = data.read(cap + 1)
        if not isinstance(raw, bytes):
            raise TypeError(f"unpack_job: expected a binary stream, read {type(raw).__name__}")
    else:
        raise TypeError(f"unpack_job: expected bytes or a binary file object, got {type(data).__name__}")
    if len(raw) > cap:
        shown = f"{_size(len(raw))}" if isinstance(data, (bytes, bytearray, memoryview)) else f"over {_size(cap)}"
        raise UploadError(f"upload is {shown}, over the {_size(cap)} limit (max_upload_bytes)")
    return raw


def _open_zip(raw: bytes, limits: UploadLimits) -> zipfile.ZipFile:
    declared = _declared_entries(raw)
    if declared is not None and declared > limits.max_entries:
        raise UploadError(f"archive declares {declared} entries, over the limit of {limits.max_entries} (max_entries)")
    try:
        return zipfile.ZipFile(io.BytesIO(raw))
    except Exception as exc:  # BadZipFile, struct/Unicode errors, EOFError, ...: all mean "not a usable zip"
        raise UploadError(f"not a zip archive, or a corrupt one: {exc}") from exc


def _declared_entries(raw: bytes) -> int | None:
    """The entry count in the end-of-central-directory record, so a huge directory is refused unparsed."""
    at = raw.rfind(b"PK\x05\x06", max(0, len(raw) - _EOCD.size - 0xFFFF))
    if at < 0 or at + _EOCD.size > len(raw):
        return None
    total = _EOCD.unpack_from(raw, at)[4]
    return None if total == 0xFFFF else total  # 0xFFFF: zip64, counted after parsing


def _validate(zf: zipfile.ZipFile, limits: UploadLimits) -> list[_Entry]:
    infos = zf.infolist()
    if not infos:
        raise UploadError("archive is empty; expected a job folder (meta.json and app folders) inside one top folder")
    if len(infos) > limits.max_entries:
        raise UploadError(f"archive has {len(infos)} entries, over the limit of {limits.max_entries} (max_entries)")
    entries: list[_Entry] = []
    total = 0
    for info in infos:
        name = info.orig_filename  # before zipfile cuts it at a NUL
        parts, is_dir = _parse_name(name, limits)
        if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise UploadError("encrypted entries are not accepted", name)
        if info.flag_bits & _FLAG_PATCHED_DATA:
            raise UploadError("compressed patched data (flag bit 5) is not supported", name)
        if info.compress_type not in _SUPPORTED:
            raise UploadError(f"unsupported compression method {info.compress_type} "
                              f"(expected one of: {', '.join(_SUPPORTED.values())})", name)
        _check_type(info, name, is_dir)
        if is_dir and info.file_size:
            raise UploadError(f"folder entry declares {info.file_size} bytes of content", name)
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UploadError(f"uncompressed contents exceed {_size(limits.max_total_bytes)} (max_total_bytes) "
                              f"at this entry ({_size(info.file_size)})", name)
        if info.file_size > limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UploadError(f"compression ratio {ratio:.0f}:1 ({_size(info.file_size)} from "
                              f"{info.compress_size} bytes) is over the {limits.max_ratio:g}:1 limit (max_ratio); "
                              "a zip bomb?", name)
        entries.append(_Entry(info, name, parts, is_dir))
    _check_layout(entries)
    return entries


def _parse_name(name: str, limits: UploadLimits) -> tuple[tuple[str, ...], bool]:
    """Split an entry name into components, refusing anything that could land outside the job folder."""
    if not name:
        raise UploadError("empty entry name", name)
    if len(name) > limits.max_name_length:
        raise UploadError(f"name is {len(name)} characters, over the limit of {limits.max_name_length} "
                          "(max_name_length)", name)
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise UploadError("control character (such as NUL or newline) in name", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UploadError("absolute path; entries must be relative paths under the job's top folder", name)
    if "\\" in name:
        raise UploadError('backslash in name; zip entries must use "/" between path components', name)
    is_dir = name.endswith("/")
    parts = tuple((name[:-1] if is_dir else name).split("/"))
    for part in parts:
        if part == "":
            raise UploadError('empty path component ("//" or a name that is only "/")', name)
        if part in (".", ".."):
            raise UploadError(f'"{part}" path component; entries may not point outside or back up the tree', name)
        if ":" in part:
            raise UploadError('colon in name (a drive or alternate data stream on Windows)', name)
        if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise UploadError(f"path component is over {NAME_MAX} bytes", name)
    return parts, is_dir


def _check_type(info: zipfile.ZipInfo, name: str, is_dir: bool) -> None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise UploadError("symbolic link entries are not accepted", name)
    if info.external_attr & _DOS_REPARSE_POINT:
        raise UploadError("Windows reparse point (link or junction) entries are not accepted", name)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UploadError(f"not a regular file or folder (file type 0o{kind:o}); only files and folders "
                          "are accepted", name)
    if (kind == stat.S_IFDIR or info.external_attr & _DOS_DIRECTORY) and not is_dir:
        raise UploadError('marked as a folder but its name does not end with "/"', name)
    if kind == stat.S_IFREG and is_dir:
        raise UploadError('marked as a regular file but its name ends with "/"', name)


def _fold(path: str) -> str:
    """The key under which two names collide on a case-insensitive or normalising filesystem."""
    return unicodedata.normalize("NFC", path).casefold()


def _check_layout(entries: list[_Entry]) -> None:
    """One top folder; no duplicate names (exact or by case); nothing that is both a file and a folder."""
    tops = sorted({e.parts[0] for e in entries})
    if len(tops) > 1:
        shown = ", ".join(f"{t}/" for t in tops[:5]) + (", ..." if len(tops) > 5 else "")
        raise UploadError(f"entries are not under one single top folder (found {shown}); pack the job folder "
                          "itself so every entry starts with its name")
    explicit: dict[str, _Entry] = {}
    folders: dict[str, set[str]] = {}  # folded folder path -> spellings seen (explicit or implied)
    files: dict[str, _Entry] = {}
    for e in entries:
        if not e.is_dir and len(e.parts) == 1:
            raise UploadError(f"file at the top of the archive; expected every entry inside the folder "
                              f"{e.parts[0]}/ (a job folder, not a file)", e.name)
        path = "/".join(e.parts)
        key = _fold(path)
        if key in explicit:
            other = explicit[key]
            if other.is_dir != e.is_dir:
                raise UploadError(f"is both a file and a folder (see {_show(other.name)})", e.name)
            if other.name == e.name:
                raise UploadError("duplicate entry name", e.name)
            raise UploadError(f"name differs only in letter case or Unicode form from {_show(other.name)}; "
                              "they would collide on some filesystems", e.name)
        explicit[key] = e
        if e.is_dir:
            folders.setdefault(key, set()).add(path)
        else:
            files[key] = e
        for i in range(1, len(e.parts)):
            prefix = "/".join(e.parts[:i])
            folders.setdefault(_fold(prefix), set()).add(prefix)
    for key, spellings in folders.items():
        if len(spellings) > 1:
            a, b = sorted(spellings)[:2]
            raise UploadError(f'folder names "{a}/" and "{b}/" differ only in letter case or Unicode form; '
                              "they would collide on some filesystems", f"{b}/")
        if key in files:
            raise UploadError(f'is both a file and a folder (entries inside "{next(iter(spellings))}/" exist)',
                              files[key].name)


def _extract(zf: zipfile.ZipFile, entries: list[_Entry], work: Path) -> None:
    root_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC)
    try:
        for e in entries:
            folder_fd = _make_dirs(root_fd, e.parts if e.is_dir else e.parts[:-1])
            try:
                if not e.is_dir:
                    _write_file(zf, e, folder_fd)
            finally:
                if folder_fd != root_fd:
                    os.close(folder_fd)
    finally:
        os.close(root_fd)


def _make_dirs(root_fd: int, parts: tuple[str, ...]) -> int:
    """Open (creating as needed) the folder `parts` below root_fd, never following a symlink."""
    fd = root_fd
    for part in parts:
        try:
            os.mkdir(part, DIR_MODE, dir_fd=fd)
            created = True
        except FileExistsError:
            created = False
        child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
        if fd != root_fd:
            os.close(fd)
        fd = child
        if created:
            os.fchmod(fd, DIR_MODE)  # exact mode, whatever the umask
    return fd


def _write_file(zf: zipfile.ZipFile, e: _Entry, folder_fd: int) -> None:
    """Copy one entry's data with a budget of its declared size: a lying header cannot write more."""
    budget = e.info.file_size
    try:
        src = zf.open(e.info)
    except Exception as exc:
        raise UploadError(f"cannot read entry data: {exc}", e.name) from exc
    with src:
        fd = os.open(e.parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE,
                     dir_fd=folder_fd)
        try:
            os.fchmod(fd, FILE_MODE)
            while True:
                try:
                    chunk = src.read(min(CHUNK, budget + 1))
                except Exception as exc:  # zlib.error, BadZipFile (bad CRC), EOFError, lzma/bz2 errors
                    raise UploadError(f"corrupt entry data: {exc}", e.name) from exc
                if not chunk:
                    break
                if len(chunk) > budget:
                    raise UploadError(f"holds more data than its declared size of {e.info.file_size} bytes", e.name)
                budget -= len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    if budget:
        raise UploadError(f"holds {e.info.file_size - budget} bytes, less than its declared size of "
                          f"{e.info.file_size}", e.name)


# ------------------------------------------------------------------------------------------- helpers


def _show(name: str | None) -> str:
    """A name safe to print in a log or terminal: quoted, escaped, shortened."""
    text = json.dumps(name, ensure_ascii=True)
    return text if len(text) <= 120 else text[:100] + '..."'


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


# ---- custom code ("bring your own code"): what a site policy or the byoc right looks at ------

CUSTOM_DIR = "custom"


def _is_custom_code(parts: tuple[str, ...]) -> bool:
    return len(parts) >= 2 and parts[-1].endswith(".py") and CUSTOM_DIR in parts[:-1]


def has_custom_code(folder: str | Path) -> bool:
    """Whether a job (or app) folder brings its own code: a .py file under a `custom/` folder."""
    root = Path(folder)
    return any(_is_custom_code(p.relative_to(root).parts) for p in root.rglob("*.py")
               if p.is_file())


def archive_has_custom_code(data: bytes | bytearray | memoryview) -> bool:
    """`has_custom_code` for a job archive (pack_job's zip), from its entry names only; an archive
    that is not a readable zip counts as having none (unpacking it will refuse it anyway)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    return any(_is_custom_code(tuple(p for p in n.replace("\\", "/").split("/") if p))
               for n in names)
