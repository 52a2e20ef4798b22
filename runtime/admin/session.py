"""Session: the Python admin API of a flshell server, over its admin port (gRPC)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import grpc

from runtime.admin.errors import (ERROR_KINDS, AdminError, BadUpload, Denied, ServerUnreachable,
                                  Unsupported)
from runtime.jobs.upload import UploadError, pack_job
from runtime.proto import admin_pb2, admin_pb2_grpc
from runtime.transport.admin_messages import (API_VERSION, unpack_event, unpack_job, unpack_job_detail,
                                              unpack_site)
from runtime.version import version
from runtime.transport.grpc_server import MAX_MESSAGE

CHUNK_SIZE = 1024 * 1024    # bytes per uploaded chunk
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "ABORTED"})
ERROR_KEY = "flshell-error"  # trailing metadata set by runtime.server.admin_service
SEQ_KEY = "flshell-seq"
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Event:
    """One event of the server's event bus: `data` holds its fields beyond seq, ts and type."""

    seq: int | None
    ts: float
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: Any) -> "Event":
        seq, ts, kind, data = unpack_event(message)
        return cls(seq=seq, ts=ts, type=kind, data=data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


class _Stream:
    """One server-streaming call read as items: iterate it; `close()` (from any thread, or by
    leaving a `with`) ends the call and the iteration at once."""

    def __init__(self, session: "Session", call: Any) -> None:
        self._session = session
        self._call = call
        self._closed = False
        self._items = self._read()

    def _messages(self) -> Iterator[Any]:
        """The call's messages; ends quietly once the stream or the session was closed."""
        try:
            yield from self._call
        except grpc.RpcError as e:
            if not (self._closed or self._session._closed):
                raise self._session._error(e) from None
        finally:
            self._call.cancel()

    def _read(self) -> Iterator[Any]:
        raise NotImplementedError

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventStream(_Stream):
    """The events of one watch (Event): iterate it; `close()` (or leave a `with`) to stop
    watching. `seq` is the server's last event seq when the watch began (resume with
    `since=seq`)."""

    def __init__(self, session: "Session", call: Any, seq: int | None) -> None:
        super().__init__(session, call)
        self.seq = seq

    def _read(self) -> Iterator[Event]:
        for message in self._messages():
            yield Event.from_message(message)


class LogStream(_Stream):
    """The lines of one TailLog call, without line ends."""

    def _read(self) -> Iterator[str]:
        pending = ""
        for chunk in self._messages():
            *complete, pending = (pending + chunk.text).split("\n")
            yield from complete
        if pending and not self._closed:
            yield pending


class Session:
    """A connection to a server's admin port. Every call raises an AdminError subclass
    (runtime.admin.errors) with a message a person can act on; ServerUnreachable when the
    server does not answer. Thread-safe; close it (or use `with`) when done."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None,
                 user: str = "admin", timeout: float = 30.0) -> None:
        self.address = address
        self.user = user
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE),
                   ("grpc.initial_reconnect_backoff_ms", 100),  # see GrpcSiteTransport
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000),
                   ("grpc.keepalive_time_ms", 30_000),  # a watch on a vanished server ends
                   ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.http2.max_pings_without_data", 0)]
        self.channel = (grpc.secure_channel(address, credentials, options) if credentials
                        else grpc.insecure_channel(address, options))
        self.stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.kit: Any = None  # the startup kit, for a session made by from_startup_kit
        self._server: dict[str, Any] | None = None  # what Hello said
        self._closed = False

    @classmethod
    def from_startup_kit(cls, kit_dir: str | os.PathLike[str], address: str | None = None,
                         timeout: float = 30.0) -> "Session":
        """A session as the admin of a startup kit (`flshell provision`): the kit is verified
        (provisioning.KitError if it was altered), its certificate authenticates the session
        over mutual TLS, and the server's admin address comes from its fed_admin.json unless
        `address` is given. The admin's name, org and role are the certificate's."""
        from provisioning import KitError, load_kit

        kit = load_kit(kit_dir)
        if kit.type != "admin":
            raise KitError(f"{kit.root}: a {kit.type} kit, not an admin's (fed_admin.json)",
                           [(kit.root.name, "not an admin kit")])
        target = address or kit.config.get("server")
        if not isinstance(target, str) or ":" not in target:
            raise KitError(f"{kit.startup / 'fed_admin.json'}: no \"server\" HOST:PORT",
                           [("fed_admin.json", "no server")])
        session = cls(target, credentials=kit.channel_credentials(), user=kit.name,
                      timeout=timeout)
        session.kit = kit
        return session

    # ---- plumbing --------------------------------------------------------------------------

    def _error(self, e: grpc.RpcError) -> AdminError:
        code = e.code() if hasattr(e, "code") else None
        details = (e.details() if hasattr(e, "details") else None) or str(e)
        metadata = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
        kind = dict(metadata or ()).get(ERROR_KEY)
        if kind in ERROR_KINDS:
            return ERROR_KINDS[kind](details)
        if self._closed:
            return AdminError("the session is closed")
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return Denied(details)
        if code == grpc.StatusCode.UNAVAILABLE or (code == grpc.StatusCode.CANCELLED and "server" in details.lower()):
            return ServerUnreachable(f"server unreachable at {self.address}: {details}; is the server "
                                     "running, and are the host and admin port right?")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServerUnreachable(f"server unreachable at {self.address}: no answer within "
                                     f"{self.timeout:g} s; is the server running and not overloaded?")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return Unsupported(f"the server at {self.address} does not offer this call ({details}); "
                               "is it an older flshell?")
        return AdminError(f"{details} ({code.name if code else 'rpc error'})")

    def _check_open(self) -> None:
        if self._closed:
            raise AdminError("the session is closed")

    def _call(self, method: Callable, request: Any, timeout: float | None = None) -> Any:
        self._check_open()
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def _json(self, method: Callable, **args: Any) -> Any:
        return json.loads(self._call(method, _request(**args)).json)

    # ---- jobs ------------------------------------------------------------------------------

    def submit_job(self, folder: str | os.PathLike[str]) -> str:
        """Pack a job folder (or bare app folder), upload it; returns the new job id."""
        try:
            data = pack_job(folder)
        except UploadError as e:
            raise BadUpload(str(e)) from None
        return self.submit_archive(data)

    def submit_archive(self, data: bytes) -> str:
        """Upload a job archive as pack_job makes it; returns the new job id."""
        def chunks() -> Iterator[admin_pb2.Chunk]:
            yield admin_pb2.Chunk(header=json.dumps({"user": self.user, "size": len(data)}))
            for i in range(0, len(data), CHUNK_SIZE):
                yield admin_pb2.Chunk(data=data[i : i + CHUNK_SIZE])

        reply = self._call(self.stub.SubmitJob, chunks(), timeout=self.timeout * 4)
        return json.loads(reply.json)["job_id"]

    def list_jobs(self, name: str | None = None, status: str | None = None, limit: int | None = None,
                  include_done: bool = True) -> list[dict[str, Any]]:
        reply = self._call(self.stub.Jobs, _request(name=name, status=status, limit=limit,
                                                    include_done=include_done))
        return [unpack_job(j) for j in reply.jobs]

    def get_job(self, ref: str) -> dict[str, Any]:
        """The job (an id or a unique prefix of one) with its rounds, its transitions (every
        status it went through) and failure details."""
        return unpack_job_detail(self._call(self.stub.JobDetails, _request(job=ref)))

    def abort_job(self, ref: str) -> dict[str, Any]:
        return self._json(self.stub.AbortJob, job=ref, user=self.user)

    def delete_job(self, ref: str) -> dict[str, Any]:
        return self._json(self.stub.DeleteJob, job=ref, user=self.user)

    def clone_job(self, ref: str) -> str:
        """Submit the job's folder again as a new job; returns the new job id."""
        return self._json(self.stub.CloneJob, job=ref, user=self.user)["job_id"]

    def download_job(self, ref: str, dest: str | os.PathLike[str]) -> Path:
        """Fetch the job's server workspace into `dest`/<job id>/ and return that folder."""
        self._check_open()
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        archive = staging = None
        try:
            call = self.stub.DownloadJob(admin_pb2.JobRef(job=ref), timeout=max(self.timeout * 10, 300.0))
            first = next(call, None)
            if first is None or not first.header:
                raise AdminError(f"the server sent no download of job {ref}")
            head = json.loads(first.header)
            job_id = str(head.get("job_id", ""))
            if not _SAFE_ID.match(job_id):
                raise AdminError(f"the server named the download {job_id!r}, which is not a job id")
            target = dest / job_id
            if target.exists():
                raise AdminError(f"{target} already exists; remove it or download into another folder")
            fd, name = tempfile.mkstemp(dir=dest, prefix=f".{job_id[:8]}-", suffix=".zip")
            archive = Path(name)
            with os.fdopen(fd, "wb") as out:
                out.write(first.data)
                for chunk in call:
                    out.write(chunk.data)
            staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{job_id[:8]}-"))
            _safe_extract(archive, staging, f"the download of job {job_id[:8]}", strip=job_id)
            if target.exists():
                raise AdminError(f"{target} appeared while downloading; remove it or download into another folder")
            os.rename(staging, target)
            staging = None
            return target
        except grpc.RpcError as e:
            raise self._error(e) from None
        finally:
            if archive is not None:
                archive.unlink(missing_ok=True)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def wait_for_job(self, ref: str, timeout: float | None = None, poll: float = 5.0) -> dict[str, Any]:
        """Block until the job has ended; returns the final job. Listens for job_status events
        and looks again every `poll` seconds whatever it hears (events may be dropped).
        TimeoutError (with the job id and its status) after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        watching = True
        job_id = ref
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            window = poll if remaining is None else max(0.0, min(poll, remaining))
            call = None
            if watching and window > 0:  # subscribe first: a change after get_job is then heard
                self._check_open()
                call = self.stub.Events(admin_pb2.WatchRequest(types=["job_status"]), timeout=window)
                call.initial_metadata()
            try:
                job = self.get_job(job_id)
                job_id = job["job_id"]
                if job["status"] in FINAL_STATUSES:
                    return job
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"job {job_id[:8]} ({job.get('name')}) is still {job['status']} after "
                                       f"waiting {timeout:g} s (job id {job_id})")
                if call is None:
                    time.sleep(window)
                    continue
                try:
                    for message in call:
                        event = Event.from_message(message)
                        if event.type == "dropped" or event.get("job_id", job_id) == job_id:
                            break
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older server: poll instead
                        watching = False
                    elif e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                        raise self._error(e) from None
            finally:
                if call is not None:
                    call.cancel()

    # ---- sites, server, logs, events -------------------------------------------------------

    def list_sites(self) -> list[dict[str, Any]]:
        return [unpack_site(site) for site in self._call(self.stub.Sites, _request()).sites]

    def server(self) -> dict[str, Any]:
        """What the server says of itself (asked once per session): {"api": its admin API
        version, "version": its flshell version, "features": the calls it offers}. A server
        older than Hello is api 1 with no features listed."""
        if self._server is None:
            try:
                reply = self._call(self.stub.Hello, admin_pb2.HelloRequest(
                    api=API_VERSION, client=f"flshell {version()}"))
                self._server = {"api": reply.api, "version": reply.version,
                                "features": sorted(reply.features)}
            except Unsupported:
                self._server = {"api": 1, "version": "older than 0.1", "features": []}
        return self._server

    def supports(self, feature: str) -> bool:
        """Whether the server offers `feature` (one of Hello's features: "gpu_history",
        "transitions", ...): a front end leaves out what an older server lacks."""
        return feature in self.server()["features"]

    def system_info(self) -> dict[str, Any]:
        return self._json(self.stub.SystemInfo)

    def gpu_history(self, site: str | None = None,
                    last: int | None = None) -> dict[str, dict[int, dict[str, list[Any]]]]:
        """The server's recent GPU load per site and GPU index, from the sites' heartbeats:
        {site: {index: {"t": [...], "util": [...], "mem_used": [...]}}}, oldest first, times on
        the server's clock, None where a sample lacked the value; only `site` when given, the
        `last` samples of each GPU when given. Sites without GPUs are absent."""
        reply = self._json(self.stub.GpuHistory, site=site, last=last)
        return {name: {int(index): series for index, series in gpus.items()}
                for name, gpus in (reply.get("sites") or {}).items()}

    def operate(self, action: str, target: str | None = None,
                sites: list[str] | None = None) -> dict[str, Any]:
        """shutdown / restart the server or sites (`target` "server" | "client"), or
        remove_client (`sites`); returns {"done": [...], "message": ...}."""
        return self._json(self.stub.Operate, action=action, target=target, sites=sites or [],
                          user=self.user)

    def tail_log(self, ref: str, site: str | None = None, lines: int = 50,
                 follow: bool = False) -> "LogStream":
        """The last `lines` lines (negative: all) of the job's server log, or of `site`'s log,
        without line ends; with `follow`, then the lines appended until the job is done.
        Iterate the returned LogStream; `close()` it from any thread to stop at once."""
        self._check_open()
        call = self.stub.TailLog(admin_pb2.TailRequest(job=ref, site=site or "", lines=lines, follow=follow),
                                 timeout=None if follow else self.timeout * 4)
        return LogStream(self, call)

    def watch(self, since: int | None = None, types: Iterable[str] | None = None) -> "EventStream":
        """Subscribe to the server's events and return them as an iterator of Event. When this
        returns the server is already listening, so nothing that happens afterwards is missed
        (with `since`, the events after that seq the server still holds come first). A
        `dropped` event says how many this watcher missed by reading too slowly. Iterate it
        until the session closes; `close()` it (or use `with`) to stop watching."""
        self._check_open()
        request = admin_pb2.WatchRequest(types=sorted(types or ()))
        if since is not None:
            request.since = since
        call = self.stub.Events(request)  # no deadline: it lasts while read; keepalive spots a dead server
        metadata = dict(call.initial_metadata() or ())  # sent once subscribed, or the call failed
        if call.done() and call.code() != grpc.StatusCode.OK:
            try:
                next(call)
            except grpc.RpcError as e:
                raise self._error(e) from None
        seq = metadata.get(SEQ_KEY)
        return EventStream(self, call, int(seq) if seq and seq.isdigit() else None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.channel.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _request(**args: Any) -> admin_pb2.JsonRequest:
    return admin_pb2.JsonRequest(json=json.dumps(args))


def _safe_extract(archive: Path, root: Path, what: str, strip: str | None = None) -> None:
    """Extract a zip into the empty folder `root`, refusing (before writing anything) entries
    that are absolute, climb out with `..`, or are links or special files. When every entry
    sits in one top folder named `strip`, its contents land in `root` itself."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise AdminError(f"{what} is not a valid zip archive: {e}") from None
    with zf:
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...], bool]] = []
        for info in zf.infolist():
            name = info.filename
            why = None
            if not name or "\x00" in name or name.startswith(("/", "\\")) or _DRIVE.match(name) or "\\" in name:
                why = "an absolute or malformed path"
            parts = tuple(p for p in name.split("/") if p)
            if why is None and any(p in (".", "..") for p in parts):
                why = 'a ".." or "." path component'
            kind = stat.S_IFMT(info.external_attr >> 16)
            if why is None and kind == stat.S_IFLNK:
                why = "a symbolic link"
            elif why is None and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                why = f"a special file (type 0o{kind:o})"
            if why is not None:
                raise AdminError(f"{what} holds the entry {name!r}, {why}; nothing was extracted")
            if parts:
                plan.append((info, parts, info.is_dir()))
        if strip is not None and plan and all(p[0] == strip for _, p, _ in plan):
            plan = [(info, parts[1:], is_dir) for info, parts, is_dir in plan if parts[1:]]
        for info, parts, is_dir in plan:
            target = root.joinpath(*parts)
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            with zf.open(info) as src, os.fdopen(os.open(target, flags, 0o644), "wb") as out:
                shutil.copyfileobj(src, out)
