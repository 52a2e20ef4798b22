"""The admin port: a gRPC servicer over the JobManager that unpacks calls and maps errors to codes.

Every call is authenticated and authorized by the port's `Authorizer` (runtime.server.authz):
with mutual TLS the caller is its certificate and the authorization policy decides each command
(a denial is PERMISSION_DENIED, "member cannot submit_job"), and every decision goes to the
audit log. Without TLS the caller is the name the client sends and everything is allowed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc

from runtime.jobs import JobError
from runtime.jobs.upload import UploadError, UploadLimits, archive_has_custom_code, has_custom_code
from runtime.proto import admin_pb2
from runtime.server.authz import SUBMITTER_ORG, Authorizer, Caller, Denied, Unauthenticated
from runtime.server.gpu_history import GpuHistory
from runtime.server.job_store import AmbiguousJob, JobStoreError, UnknownJob
from runtime.server.log_tail import log_lines
from runtime.transport.admin_messages import (API_VERSION, dump, pack_event, pack_job,
                                              pack_job_detail, pack_site)
from runtime.transport.grpc_server import MAX_MESSAGE
from runtime.transport.guard import HEADROOM, MAX_UNARY_BYTES, RequestRefused, service_handler
from runtime.transport.health import EXCLUSIVE_PORT, ServingPort

log = logging.getLogger(__name__)

SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
CHUNK_SIZE = 1024 * 1024      # bytes per Chunk / LogChunk message
WATCH_QUEUE = 1000            # events a watcher may fall behind by before it gets `dropped`
ERROR_KEY = "flshell-error"   # trailing metadata: the kind of error, for the client to raise
SEQ_KEY = "flshell-seq"       # Watch's initial metadata: the bus's last seq when the watcher subscribed
UPLOAD_DEADLINE = 600.0       # seconds a job upload may take, whatever the client's deadline
MAX_RECEIVE = CHUNK_SIZE + HEADROOM  # the largest message the admin port accepts
_NO_JOB = object()  # _authorize: the command is not about one job
_SITE = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
OPERATE_ACTIONS = ("shutdown", "restart", "remove_client")


def _error_kind(e: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(e, Denied):
        return grpc.StatusCode.PERMISSION_DENIED, "denied"
    if isinstance(e, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"
    if isinstance(e, RequestRefused):
        return e.code, ("too_large" if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                        else "bad_argument")
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


_dump = dump

# what Hello says this server offers (Session.supports): calls beyond the api version's base
FEATURES = ("jobs", "job_details", "transitions", "sites", "events", "gpu_history", "operate",
            "tail_log", "download_job", "clone_job", "system_info")


def _object(text: str, what: str = "the request") -> dict[str, Any]:
    try:
        args = json.loads(text) if text else {}
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{what} nests arrays or objects too deeply") from None
    if not isinstance(args, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(args).__name__}")
    return args


def _ref(ref: Any) -> str:
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError('a job id (or a prefix of one) is needed in "job"')
    return ref.strip()


class AdminServicer:
    """Thin: every method authenticates and authorizes the caller (runtime.server.authz), unpacks,
    calls the JobManager, packs; errors become gRPC codes plus a `flshell-error` kind in trailing
    metadata (see runtime.admin.errors)."""

    def __init__(self, manager: Any, watch_queue: int = WATCH_QUEUE,
                 max_upload_bytes: int = UploadLimits().max_upload_bytes,
                 authorizer: Authorizer | None = None) -> None:
        self.manager = manager
        self.watch_queue = watch_queue
        self.max_upload_bytes = max_upload_bytes
        self.authz = authorizer or Authorizer()
        self.gpu_history = GpuHistory()  # from the heartbeats the manager's event bus publishes
        events = getattr(manager, "events", None)
        if events is not None:
            self.gpu_history.follow(events)

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

    def _refused(self, context: grpc.ServicerContext, e: RequestRefused) -> None:
        """A request refused before parsing (guard): say so in the metadata too."""
        context.set_trailing_metadata(((ERROR_KEY, _error_kind(e)[1]),))  # type: ignore[index]

    # ---- who, and may they --------------------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext, header: dict[str, Any] | None = None) -> Caller:
        """Who makes the call: decided by the Authorizer, from the TLS certificate when there is
        one (never from a request field), else the name the client sends."""
        try:
            return self.authz.caller(context, header)
        except Unauthenticated as e:
            log.warning(f"refused an admin call from {context.peer()}: {e}")
            if self.authz.audit is not None:
                self.authz.audit.command(Caller("?"), "connect", "denied", str(e),
                                         peer=context.peer())
            raise

    def _job_owner(self, ref: Any) -> tuple[str, str | None, str | None]:
        """(job id, submitter, submitter's org) of the job `ref` names."""
        owner = getattr(self.manager, "job_owner", None)
        if owner is not None:
            return owner(_ref(ref))
        job = self.manager.get_job(_ref(ref))
        return job["job_id"], job.get("submitter"), (job.get("extra") or {}).get(SUBMITTER_ORG)

    def _authorize(self, context: grpc.ServicerContext, command: str, rights: list[str],
                   args: dict[str, Any] | None = None, job_ref: Any = _NO_JOB,
                   collection: bool = False, **extra: Any) -> tuple[Caller, str | None]:
        """The caller, after the policy allowed `rights` (on the job `job_ref` names, if any);
        Denied otherwise. Every outcome is audited, a job that does not exist included."""
        caller = self._caller(context, args)
        job_id = owner = org = None
        if job_ref is not _NO_JOB:
            try:
                job_id, owner, org = self._job_owner(job_ref)
            except Exception as e:  # noqa: BLE001 - unknown / ambiguous job: audited, then raised
                if self.authz.audit is not None:
                    self.authz.audit.command(caller, command, "failed", str(e),
                                             job=str(job_ref)[:80], **extra)
                raise
        self.authz.check(caller, command, rights, job=job_id, job_owner=owner,
                         job_owner_org=org, collection=collection, **extra)
        return caller, job_id

    def _json_call(self, request, context, call: Callable[[dict[str, Any]], Any],
                   pack: Callable[[Any], Any] = lambda v: admin_pb2.JsonReply(json=_dump(v))) -> Any:
        """Unpack the JSON request, `call` it, `pack` the reply (JSON unless a typed message)."""
        try:
            return pack(call(_object(request.json)))
        except Exception as e:  # noqa: BLE001 - every error becomes a status; abort raises
            self._abort(context, e)

    # ---- calls ----------------------------------------------------------------------------------

    def Hello(self, request, context):
        try:
            self._caller(context)  # any authenticated caller may ask
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        from runtime.version import version

        return admin_pb2.HelloReply(api=API_VERSION, version=version(), features=FEATURES)

    def SubmitJob(self, request_iterator, context):
        try:
            first = next(request_iterator, None)
            if first is None or not first.header:
                raise ValueError("a job upload starts with a header chunk")
            header = _object(first.header, "the upload header")
            caller = self._caller(context, header)
            ok, _ = self.authz.allowed(caller, "submit_job")
            if not ok:  # refuse before taking the upload; audited by check()
                self.authz.check(caller, "submit_job", ["submit_job"])
            data = bytearray(first.data)
            for chunk in request_iterator:
                data += chunk.data
                if len(data) > self.max_upload_bytes:
                    raise UploadError(f"the job archive is over {self.max_upload_bytes} bytes, the server's "
                                      "limit (max_upload_bytes); leave data the job does not need out of the "
                                      "job folder")
            custom = archive_has_custom_code(data)
            self.authz.check(caller, "submit_job", ["submit_job", *(["byoc"] if custom else [])],
                             custom_code=custom)
            extra = {SUBMITTER_ORG: caller.org} if caller.org else None
            job_id = self._submit(bytes(data), caller.user, extra)
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        return admin_pb2.JsonReply(json=_dump({"job_id": job_id}))

    def _submit(self, data: bytes, user: str, extra: dict[str, Any] | None) -> str:
        if extra is None:
            return self.manager.submit_archive(data, user)
        return self.manager.submit_archive(data, user, extra=extra)

    def Jobs(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            caller, _ = self._authorize(context, "list_jobs", ["view"], a, collection=True)
            include_done = a.get("include_done", True)
            if not isinstance(include_done, bool):
                raise ValueError(f'"include_done" must be true or false, got {str(include_done)[:40]}')
            jobs = self.manager.list_jobs(name=a.get("name"), status=a.get("status"),
                                          limit=a.get("limit"), include_done=include_done)
            return [j for j in jobs if self.authz.visible(caller, j)]
        return self._json_call(request, context, call,
                               lambda jobs: admin_pb2.JobList(jobs=[pack_job(j) for j in jobs]))

    def JobDetails(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            _, job_id = self._authorize(context, "get_job", ["view"], a, job_ref=a.get("job"))
            return self.manager.get_job(job_id)
        return self._json_call(request, context, call, pack_job_detail)

    def AbortJob(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            caller, job_id = self._authorize(context, "abort_job", ["manage_job"], a,
                                             job_ref=a.get("job"))
            return self.manager.abort_job(job_id, by=caller.user)
        return self._json_call(request, context, call)

    def DeleteJob(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            _, job_id = self._authorize(context, "delete_job", ["manage_job"], a,
                                        job_ref=a.get("job"))
            return self.manager.delete_job(job_id)
        return self._json_call(request, context, call)

    def CloneJob(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            rights = ["manage_job", "submit_job"]
            if self._job_has_custom_code(a.get("job")):
                rights.append("byoc")
            caller, job_id = self._authorize(context, "clone_job", rights, a, job_ref=a.get("job"))
            if caller.org:
                return {"job_id": self.manager.clone_job(job_id, submitter=caller.user,
                                                         extra={SUBMITTER_ORG: caller.org})}
            return {"job_id": self.manager.clone_job(job_id, submitter=caller.user)}
        return self._json_call(request, context, call)

    def _job_has_custom_code(self, ref: Any) -> bool:
        try:
            folder = self.manager.store.get(_ref(ref)).folder
        except Exception:  # noqa: BLE001 - an unknown job is reported by _authorize
            return False
        return has_custom_code(folder)

    def Sites(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            self._authorize(context, "list_sites", ["view"], a, collection=True)
            return self.manager.list_sites()
        return self._json_call(request, context, call,
                               lambda sites: admin_pb2.SiteList(sites=[pack_site(s) for s in sites]))

    def GpuHistory(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            self._authorize(context, "gpu_history", ["view"], a, collection=True)
            site, last = a.get("site"), a.get("last")
            if site is not None and not (isinstance(site, str) and _SITE.fullmatch(site)):
                raise ValueError(f"site {str(site)[:80]!r}: not a site name")
            if last is not None and (not isinstance(last, int) or isinstance(last, bool) or last < 1):
                raise ValueError(f'"last" must be a whole number of samples from 1, got {str(last)[:40]}')
            engine = getattr(self.manager, "engine", None)
            if engine is not None:
                self.gpu_history.retain(engine.sites.names(None))
            sites, samples = self.gpu_history.snapshot(site, last)
            return {"sites": sites, "samples": samples, "capacity": self.gpu_history.capacity}
        return self._json_call(request, context, call)

    def SystemInfo(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            self._authorize(context, "system_info", ["view"], a, collection=True)
            return self.manager.system_info()
        return self._json_call(request, context, call)

    def Operate(self, request, context):
        def call(a: dict[str, Any]) -> Any:
            action, target = a.get("action"), a.get("target")
            if action not in OPERATE_ACTIONS:
                raise ValueError(f"unknown action {str(action)[:40]!r}: "
                                 f"{', '.join(OPERATE_ACTIONS)}")
            if target is not None and target not in ("server", "client"):
                raise ValueError(f"target must be server or client, got {str(target)[:40]!r}")
            sites = a.get("sites") or []
            if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
                raise ValueError('"sites" must be a list of site names')
            caller = self._caller(context, a)
            command = f"{action} {target}" if target else str(action)
            if action == "remove_client" or target == "client":
                # own_org: every site it touches must be of the caller's org (its certificate's)
                named = sites or [s["name"] for s in self.manager.list_sites()]
                if named:  # all of them or none: one verdict, one audit line
                    self.authz.check_sites(caller, command, "operate",
                                           {site: self._site_org(site) for site in named})
                else:
                    self.authz.check(caller, command, ["operate"], site=None, site_org=None)
            else:  # the server itself: a condition on an org cannot hold, only "any" does
                self.authz.check(caller, command, ["operate"], site_org="")
            return self.manager.operate(str(action), target, sites, by=caller.user)
        return self._json_call(request, context, call)

    def _site_org(self, site: str) -> str:
        rec = self.manager.engine.sites.get(site)
        org = (rec.info or {}).get("org") if rec is not None else None
        return org if isinstance(org, str) else ""

    def DownloadJob(self, request, context):
        try:
            self._authorize(context, "download_job", ["download_job"], job_ref=request.job)
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
            if request.site and not _SITE.fullmatch(request.site):  # a name, never a path
                raise ValueError(f"site {request.site[:80]!r}: not a site name")
            _, ref = self._authorize(context, "tail_log", ["download_job"], job_ref=request.job,
                                     site=request.site or None)
            path = Path(self.manager.log_file(ref, request.site or None))
            f = open(path, "rb")
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
        stop = threading.Event()
        context.add_callback(stop.set)

        def job_done() -> bool:
            try:
                return self.manager.job_done(ref)
            except Exception as e:  # noqa: BLE001 - e.g. the job was deleted meanwhile
                log.debug("tail_log: job %s: %s", ref, e)
                return True

        def refresh() -> None:
            flush = getattr(self.manager, "flush_job_logs", None)
            if flush is not None and request.site:
                flush(ref)

        for text in log_lines(f, request.lines, request.follow, context.is_active, job_done, stop,
                              refresh):
            yield admin_pb2.LogChunk(text=text)

    def Events(self, request, context):
        try:
            self._authorize(context, "watch", ["view"], collection=True)
        except Exception as e:  # noqa: BLE001
            self._abort(context, e)
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
                yield pack_event(event)
        finally:
            sub.close()


class AdminServer(ServingPort):
    """The admin port as a context manager: binds `port` (0 = a free one) and reports it; mutual
    TLS when `credentials` (a server kit's `server_credentials()`) are given, with `policy`
    (provisioning.policy.Policy) deciding every command and `audit` (runtime.server.authz.
    AuditLog) recording it. Serves grpc.health.v1 too."""

    def __init__(self, manager: Any, host: str = "127.0.0.1", port: int = 0,
                 credentials: grpc.ServerCredentials | None = None, max_workers: int = 32,
                 watch_queue: int = WATCH_QUEUE,
                 max_upload_bytes: int = UploadLimits().max_upload_bytes,
                 policy: Any = None, audit: Any = None, admins: Any = None,
                 upload_deadline: float | None = UPLOAD_DEADLINE) -> None:
        # Each open Watch / followed TailLog holds a worker; past max_workers calls are refused
        # (RESOURCE_EXHAUSTED) instead of queueing behind streams that may never end.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="admin-rpc"),
            options=[EXCLUSIVE_PORT, ("grpc.max_receive_message_length", MAX_RECEIVE),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.keepalive_time_ms", 60_000),  # finds watchers that vanished
                     ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),  # Session pings
                     ("grpc.keepalive_permit_without_calls", 1)],
            maximum_concurrent_rpcs=max_workers,
        )
        self.authorizer = Authorizer(policy=policy, secure=credentials is not None, audit=audit,
                                     admins=admins)
        self.servicer = AdminServicer(manager, watch_queue=watch_queue,
                                      max_upload_bytes=max_upload_bytes, authorizer=self.authorizer)
        self.server.add_generic_rpc_handlers((service_handler(
            SERVICE_NAME, admin_pb2.DESCRIPTOR.services_by_name["AdminService"], admin_pb2,
            self.servicer, max_unary_bytes=MAX_UNARY_BYTES, stream_deadline=upload_deadline,
            on_refused=self.servicer._refused),))
        self._bind(SERVICE_NAME, "admin port", host, port, credentials)

    def stop(self, grace: float | None = 1.0) -> None:
        super().stop(grace)
        self.servicer.gpu_history.close()
