"""The admin port: a gRPC servicer over the JobManager that unpacks calls and maps errors to codes."""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, BinaryIO, Callable

import grpc

from runtime.jobs import JobError
from runtime.jobs.upload import UploadError, UploadLimits
from runtime.proto import admin_pb2, admin_pb2_grpc
from runtime.server.job_store import AmbiguousJob, JobStoreError, UnknownJob
from runtime.transport.grpc_server import MAX_MESSAGE
from runtime.transport.health import ServingPort

log = logging.getLogger(__name__)

SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
CHUNK_SIZE = 1024 * 1024      # bytes per Chunk / LogChunk message
WATCH_QUEUE = 1000            # events a watcher may fall behind by before it gets `dropped`
TAIL_POLL = 0.2               # seconds between looks at a followed log file
TAIL_QUIET_POLLS = 5          # a followed log ends once the job is done and it stayed this many polls unchanged
ERROR_KEY = "flshell-error"   # trailing metadata: the kind of error, for the client to raise
SEQ_KEY = "flshell-seq"       # Watch's initial metadata: the bus's last seq when the watcher subscribed
_TAIL_BLOCK = 64 * 1024


def _caller(context: grpc.ServicerContext, header: dict[str, Any]) -> str:
    """Who makes the call. For now the name the client sends (or "admin"); the security issue
    takes it from the client's TLS certificate instead, here and nowhere else."""
    user = header.get("user")
    return user if isinstance(user, str) and user.strip() else "admin"


def _error_kind(e: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(e, UnknownJob):  # before JobStoreError, its base
        return grpc.StatusCode.NOT_FOUND, "unknown_job"
    if isinstance(e, AmbiguousJob):
        return grpc.StatusCode.FAILED_PRECONDITION, "ambiguous_job"
    if isinstance(e, JobStoreError):
        return grpc.StatusCode.FAILED_PRECONDITION, "refused"
    if isinstance(e, UploadError):  # before ValueError, its base
        return grpc.StatusCode.INVALID_ARGUMENT, "bad_upload"
    if isinstance(e, JobError):
        return grpc.StatusCode.INVALID_ARGUMENT, "invalid_job"
    if isinstance(e, FileNotFoundError):
        return grpc.StatusCode.NOT_FOUND, "not_found"
    if isinstance(e, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, "bad_argument"
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    for attr in ("item", "tolist"):  # numpy / torch scalars and arrays
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError, RuntimeError):
                continue
    return repr(value)  # a reply or an event is never lost to one odd value


def _dump(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _object(text: str, what: str = "the request") -> dict[str, Any]:
    try:
        args = json.loads(text) if text else {}
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(args, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(args).__name__}")
    return args


def _ref(ref: Any) -> str:
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError('a job id (or a prefix of one) is needed in "job"')
    return ref.strip()


def _tail_start(f: BinaryIO, lines: int) -> int:
    """The offset where the last `lines` lines of `f` start (negative: 0, the whole file)."""
    end = f.seek(0, os.SEEK_END)
    if lines < 0:
        return 0
    if lines == 0:
        return end
    pos, count = end, 0
    while pos > 0:
        size = min(_TAIL_BLOCK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            if pos + i == end - 1:  # the newline that ends the file ends the last line
                continue
            count += 1
            if count == lines:
                return pos + i + 1
    return 0


def _whole_lines(pending: bytearray, final: bool) -> bytes:
    """Take from `pending` what can be sent: its complete lines (everything when `final`, or
    when one line outgrows a chunk, so memory stays bounded)."""
    whole = pending.rfind(b"\n") + 1
    cut = len(pending) if final or (not whole and len(pending) >= CHUNK_SIZE) else whole
    out = bytes(pending[:cut])
    del pending[:cut]
    return out


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Thin: every method unpacks, calls the JobManager, packs; errors become gRPC codes plus a
    `flshell-error` kind in trailing metadata (see runtime.admin.errors)."""

    def __init__(self, manager: Any, watch_queue: int = WATCH_QUEUE,
                 max_upload_bytes: int = UploadLimits().max_upload_bytes) -> None:
        self.manager = manager
        self.watch_queue = watch_queue
        self.max_upload_bytes = max_upload_bytes

    def _abort(self, context: grpc.ServicerContext, e: Exception) -> None:
        mapped = _error_kind(e)
        if mapped is None:
            log.exception("admin call failed")
            context.set_trailing_metadata(((ERROR_KEY, "internal"),))
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error on the server ({type(e).__name__}: {e}); see the server log")
        code, kind = mapped
        context.set_trailing_metadata(((ERROR_KEY, kind),))
        context.abort(code, str(e))

    def _json_call(self, request, context, call: Callable[[dict[str, Any]], Any]) -> admin_pb2.JsonReply:
        try:
            return admin_pb2.JsonReply(json=_dump(call(_object(request.json))))
        except Exception as e:  # noqa: BLE001 - every error becomes a status; abort raises
            self._abort(context, e)

    def SubmitJob(self, request_iterator, context):
        try:
            first = next(request_iterator, None)
            if first is None or not first.header:
                raise ValueError("a job upload starts with a header chunk")
            header = _object(first.header, "the upload header")
            data = bytearray(first.data)
            for chunk in request_iterator:
                data += chunk.data
                if len(data) > self.max_upload_bytes:
                    raise UploadError(f"the job archive is over {self.max_upload_bytes} bytes, the server's "
                                      "limit (max_upload_bytes); leave data the job does not need out of the "
                                      "job folder")
            job_id = self.manager.submit_archive(bytes(data), _caller(context, header))
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        return admin_pb2.JsonReply(json=_dump({"job_id": job_id}))

    def ListJobs(self, request, context):
        return self._json_call(request, context, lambda a: {"jobs": self.manager.list_jobs(
            name=a.get("name"), status=a.get("status"), limit=a.get("limit"),
            include_done=bool(a.get("include_done", True)))})

    def GetJob(self, request, context):
        return self._json_call(request, context, lambda a: self.manager.get_job(_ref(a.get("job"))))

    def AbortJob(self, request, context):
        return self._json_call(request, context,
                               lambda a: self.manager.abort_job(_ref(a.get("job")), by=_caller(context, a)))

    def DeleteJob(self, request, context):
        return self._json_call(request, context, lambda a: self.manager.delete_job(_ref(a.get("job"))))

    def CloneJob(self, request, context):
        return self._json_call(request, context, lambda a: {
            "job_id": self.manager.clone_job(_ref(a.get("job")), submitter=_caller(context, a))})

    def ListSites(self, request, context):
        return self._json_call(request, context, lambda a: {"sites": self.manager.list_sites()})

    def SystemInfo(self, request, context):
        return self._json_call(request, context, lambda a: self.manager.system_info())

    def DownloadJob(self, request, context):
        try:
            job = self.manager.get_job(_ref(request.job))
            path = Path(self.manager.download_job(job["job_id"]))
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                yield admin_pb2.Chunk(header=_dump({"job_id": job["job_id"], "name": job.get("name"),
                                                    "size": size}))
                while context.is_active() and (data := f.read(CHUNK_SIZE)):
                    yield admin_pb2.Chunk(data=data)
        finally:
            path.unlink(missing_ok=True)

    def TailLog(self, request, context):
        try:
            ref = _ref(request.job)
            path = Path(self.manager.log_file(ref, request.site or None))
            f = open(path, "rb")
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        stop = threading.Event()
        context.add_callback(stop.set)
        with f:
            f.seek(_tail_start(f, request.lines))
            pending = bytearray()
            done = False  # the job has ended: stop once the file stays unchanged a while
            quiet = 0
            while context.is_active():
                data = f.read(CHUNK_SIZE)
                if data:
                    pending += data
                    quiet = 0
                    if text := _whole_lines(pending, final=False):
                        yield admin_pb2.LogChunk(text=text.decode("utf-8", errors="replace"))
                    continue
                if not request.follow or (done and quiet >= TAIL_QUIET_POLLS):
                    break
                if os.fstat(f.fileno()).st_size < f.tell():  # truncated: start over
                    f.seek(0)
                    continue
                if done:
                    quiet += 1
                else:
                    try:
                        done = self.manager.job_done(ref)
                    except Exception as e:  # noqa: BLE001 - e.g. the job was deleted meanwhile
                        log.debug("tail_log: job %s: %s", ref, e)
                        done = True
                stop.wait(TAIL_POLL)
            if pending and context.is_active():
                yield admin_pb2.LogChunk(text=_whole_lines(pending, final=True).decode("utf-8", errors="replace"))

    def Watch(self, request, context):
        types = set(request.types) or None
        since = request.since if request.HasField("since") else None
        events = self.manager.events
        sub = events.subscribe(maxsize=self.watch_queue, types=types, since=since)
        try:
            if not context.add_callback(sub.close):
                return  # the call has already ended
            context.send_initial_metadata(((SEQ_KEY, str(events.last_seq)),))
            while context.is_active():
                event = sub.get(timeout=1.0)
                if event is None:
                    if sub.closed:
                        return
                    continue
                yield admin_pb2.Event(json=_dump(event))
        finally:
            sub.close()


class AdminServer(ServingPort):
    """The admin port as a context manager: binds `port` (0 = a free one) and reports it; TLS
    when `credentials` (grpc.ssl_server_credentials) are given. Serves grpc.health.v1 too."""

    def __init__(self, manager: Any, host: str = "127.0.0.1", port: int = 0,
                 credentials: grpc.ServerCredentials | None = None, max_workers: int = 32,
                 watch_queue: int = WATCH_QUEUE,
                 max_upload_bytes: int = UploadLimits().max_upload_bytes) -> None:
        # Each open Watch / followed TailLog holds a worker; past max_workers calls are refused
        # (RESOURCE_EXHAUSTED) instead of queueing behind streams that may never end.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="admin-rpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.keepalive_time_ms", 60_000),  # finds watchers that vanished
                     ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),  # Session pings
                     ("grpc.keepalive_permit_without_calls", 1)],
            maximum_concurrent_rpcs=max_workers,
        )
        self.servicer = AdminServicer(manager, watch_queue=watch_queue, max_upload_bytes=max_upload_bytes)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.servicer, self.server)
        self._bind(SERVICE_NAME, "admin port", host, port, credentials)

