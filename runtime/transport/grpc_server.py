"""The site port: a gRPC servicer that unpacks calls, runs the FLHandler, maps errors to codes.

With mutual TLS (`FLServer(..., credentials=kit.server_credentials())`) every call is checked
against the caller's certificate: it must be a site's (OU "client") of this project, and every
site name in the request must be the certificate's CN -- site-1 can never poll, report or
submit for site-2. Inputs are bounded (runtime.transport.guard): frames of a few MiB, other
requests 1 MiB, result uploads a deadline and a model-size cap, concurrent calls a maximum.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent import futures
from typing import Any, Iterable, Iterator

import grpc

from runtime.proto import fl_pb2
from runtime.transport.base import (FLHandler, JobEnd, JobStart, NotRegistered, ServerClosing,
                                    SiteCommand, SiteMessage, TaskAssignment, TaskResult,
                                    TransportError)
from runtime.transport.frames import data_frame, decode_frame, header_frame
from runtime.transport.guard import HEADROOM, MAX_UNARY_BYTES, RequestRefused, service_handler
from runtime.transport.health import EXCLUSIVE_PORT, ServingPort
from runtime.wire import DEFAULT_CHUNK_SIZE, ModelAssembler, WireError, WireLimitError, iter_model_chunks

SERVICE = "flshell.fl.FLService"
MAX_MESSAGE = 16 * 1024 * 1024  # what clients accept from a server (replies are frames too)
MAX_FRAME_BYTES = DEFAULT_CHUNK_SIZE + HEADROOM  # the most one received message may hold
DEFAULT_MAX_MODEL_BYTES = 8 * 1024 ** 3  # a result stream announcing more is refused at its header
UPLOAD_DEADLINE = 600.0  # seconds a result upload may take, whatever the client's deadline
MAX_POLL_SECONDS = 60.0
SITE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")  # what the simulator and the POC accept

log = logging.getLogger("flshell.server.fl")


def message_frames(site: str, msg: SiteMessage, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """A site message as encoded frames (runtime.transport.frames): a header frame, then (for a
    task) its model's wire bytes, each chunk copied once, straight into its frame."""
    if isinstance(msg, JobStart):
        head = {"kind": "job_start", "job_id": msg.job_id, "job_name": msg.job_name,
                "app_name": msg.app_name, "meta": msg.meta}
    elif isinstance(msg, JobEnd):
        head = {"kind": "job_end", "job_id": msg.job_id, "status": msg.status}
    elif isinstance(msg, SiteCommand):
        head = {"kind": "site_command", "action": msg.action}
    else:
        head = {"kind": "task", "task_id": msg.task_id, "job_id": msg.job_id,
                "task_name": msg.task_name, "timeout": msg.timeout}
    yield header_frame(json.dumps({**head, "site": site}))
    if isinstance(msg, TaskAssignment):
        for chunk in iter_model_chunks(msg.take_model(), chunk_size, copy=False):
            yield data_frame(chunk)


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:
        raise ValueError(f"{what} nests arrays or objects too deeply") from None


class FLServicer:
    """Thin: every method authenticates the site, unpacks, calls the handler, packs.
    TransportError -> FAILED_PRECONDITION (NotRegistered -> NOT_FOUND, ServerClosing ->
    UNAVAILABLE); bad input
    -> INVALID_ARGUMENT; over a limit -> RESOURCE_EXHAUSTED; another site's name ->
    PERMISSION_DENIED; no usable certificate -> UNAUTHENTICATED."""

    def __init__(self, handler: FLHandler, max_model_bytes: int | None = DEFAULT_MAX_MODEL_BYTES,
                 secure: bool = False, sites: Iterable[str] | None = None) -> None:
        """`secure`: the port runs mutual TLS, so each call's site comes from its certificate.
        `sites`: the project's site names (the server kit's fed_server.json); a certificate of
        the project CA naming anything else is refused. None: any site certificate of the CA."""
        self.handler = handler
        self.max_model_bytes = max_model_bytes
        self.secure = secure
        self.sites = frozenset(sites) if sites is not None else None

    def _abort(self, context: grpc.ServicerContext, e: Exception) -> None:
        text = str(e)
        if isinstance(e, RequestRefused):
            code = e.code
        elif isinstance(e, WireLimitError):
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
        elif isinstance(e, ServerClosing):
            code = grpc.StatusCode.UNAVAILABLE
        elif isinstance(e, NotRegistered):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(e, (WireError, ValueError)) and not isinstance(e, TransportError):
            code = grpc.StatusCode.INVALID_ARGUMENT
        else:
            code = grpc.StatusCode.FAILED_PRECONDITION
        context.abort(code, text)

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode, why: str) -> None:
        log.warning(f"refused a call from {context.peer()}: {why}")
        context.abort(code, why)

    def _site_identity(self, context: grpc.ServicerContext) -> Any:
        """The calling site's Identity from its verified certificate (None on an insecure port)."""
        if not self.secure:
            return None
        from provisioning.identity import IdentityError, peer_identity

        try:
            ident = peer_identity(context)
        except IdentityError as e:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(e))
        if ident.kind != "client":
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"{ident.name} presents a {ident.role or 'role-less'} certificate; only "
                         "sites (client certificates) may use the site port")
        if self.sites is not None and ident.name not in self.sites:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED,
                         f"{ident.name} is not a site of this project")
        return ident

    def _authorize(self, context: grpc.ServicerContext, *claimed: str) -> Any:
        """With TLS: every site name the request carries must be the caller's certificate CN.
        Returns the caller's Identity (None on an insecure port)."""
        ident = self._site_identity(context)
        if ident is None:
            return None
        name = ident.name
        for site in claimed:
            if site != name:
                self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                             f"site {name} cannot act for site {site!r}: a site's certificate "
                             f"speaks for that site only")
        return ident

    def Register(self, request, context):
        ident = self._authorize(context, request.site)
        if not SITE_NAME.match(request.site):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"site name {request.site[:80]!r}: expected letters, digits, '.', '_', "
                          "'@' or '-' (at most 128)")
        try:
            info = _json(request.json, "site info")
            if not isinstance(info, dict):
                raise ValueError("site info must be a JSON object")
            if ident is not None:  # what the certificate says, not what the site says
                info = {**info, "org": ident.org}
            reply = self.handler.register(request.site, info)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.JsonReply(json=json.dumps(reply))

    def Heartbeat(self, request, context):
        ident = self._authorize(context, request.site)
        try:
            info = _json(request.json, "heartbeat")
            if not isinstance(info, dict):
                raise ValueError("heartbeat info must be a JSON object")
            if ident is not None:
                info = {**info, "org": ident.org}
            reply = self.handler.heartbeat(request.site, info)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.JsonReply(json=json.dumps(reply))

    def Poll(self, request, context):
        sites = list(request.sites)
        self._authorize(context, *sites)
        if not sites:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a poll names at least one site")
        timeout = request.timeout if 0.0 <= request.timeout <= MAX_POLL_SECONDS else (
            MAX_POLL_SECONDS if request.timeout > MAX_POLL_SECONDS else 0.0)  # NaN: 0
        try:
            if len(sites) == 1:
                msg = self.handler.poll(sites[0], timeout, request.job_id or None)
                batch = [(sites[0], msg)] if msg is not None else []
            else:
                batch = self.handler.poll_many(set(sites), timeout)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        for site, msg in batch:
            yield from message_frames(site, msg)

    def SubmitResult(self, request_iterator, context):
        try:
            first = next(request_iterator, None)
            if first is None or not first.header:
                raise ValueError("a result stream starts with a header frame")
            head = _json(first.header, "result header")
            if not isinstance(head, dict):
                raise ValueError("the result header is not a JSON object")
            self._authorize(context, str(head.get("site")))
            # whose task it is, before a byte of the model is read
            self.handler.expect_result(str(head["task_id"]), str(head["site"]))
            model = None
            if head.get("has_model"):
                asm = ModelAssembler(max_bytes=self.max_model_bytes)
                for frame in request_iterator:
                    asm.feed(frame.data)
                model = asm.result()
            result = TaskResult(
                task_id=str(head["task_id"]), job_id=str(head["job_id"]), site=str(head["site"]),
                ok=bool(head["ok"]), model=model, error=head.get("error"),
                seconds=float(head.get("seconds", 0.0)),
            )
            self.handler.submit_result(result)
        except (TransportError, WireError, ValueError, KeyError, TypeError, RequestRefused) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def ReportJob(self, request, context):
        self._authorize(context, request.site)
        try:
            self.handler.report_job(request.site, request.job_id, request.state,
                                    request.detail if request.has_detail else None)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def LogMetrics(self, request, context):
        self._authorize(context, request.site)
        try:
            self.handler.log_metrics(request.site, request.job_id,
                                     _json(request.records_json, "metric records"))
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def GetJob(self, request, context):
        self._authorize(context, request.site)
        try:
            data = self.handler.get_job(request.site, request.job_id)
        except (TransportError, ValueError, OSError) as e:
            self._abort(context, e)
        view = memoryview(data)
        for i in range(0, len(data), DEFAULT_CHUNK_SIZE):
            yield data_frame(view[i : i + DEFAULT_CHUNK_SIZE])

    def ShipLog(self, request, context):
        self._authorize(context, request.site)
        try:
            self.handler.ship_log(request.site, request.job_id, request.text)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def Goodbye(self, request, context):
        self._authorize(context, request.site)
        try:
            self.handler.goodbye(request.site)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()


FRAME_STREAMS = {"Poll": "response", "GetJob": "response", "SubmitResult": "request"}


def add_fl_service(servicer: FLServicer, server: grpc.Server,
                   upload_deadline: float | None = UPLOAD_DEADLINE) -> None:
    """fl.proto's FLService, with its Frame streams encoded by runtime.transport.frames instead
    of protobuf objects (the same bytes on the wire, two copies fewer per chunk), every request
    guarded (runtime.transport.guard)."""
    server.add_generic_rpc_handlers((service_handler(
        SERVICE, fl_pb2.DESCRIPTOR.services_by_name["FLService"], fl_pb2, servicer,
        deserializers={"SubmitResult": decode_frame},
        serializers={"Poll": None, "GetJob": None},  # the servicer yields encoded frames (bytes)
        max_unary_bytes=MAX_UNARY_BYTES, stream_deadline=upload_deadline),))


class FLServer(ServingPort):
    """The site port as a context manager: binds `port` (0 = a free one) and reports it; mutual
    TLS when `credentials` (a server kit's `server_credentials()`) are given.

    Every site (and every job process of a site) holds one worker in a long poll, so
    `max_workers` bounds how many can be connected at once; calls past it are refused with
    RESOURCE_EXHAUSTED (maximum_concurrent_rpcs) rather than queued."""

    def __init__(self, handler: FLHandler, host: str = "127.0.0.1", port: int = 0,
                 max_workers: int = 256, max_model_bytes: int | None = DEFAULT_MAX_MODEL_BYTES,
                 credentials: grpc.ServerCredentials | None = None,
                 sites: Iterable[str] | None = None,
                 max_message_bytes: int = MAX_FRAME_BYTES,
                 upload_deadline: float | None = UPLOAD_DEADLINE) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fl-rpc"),
            options=[EXCLUSIVE_PORT, ("grpc.max_receive_message_length", max_message_bytes),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                     ("grpc.http2.max_ping_strikes", 2)],
            maximum_concurrent_rpcs=max_workers,
        )
        self.servicer = FLServicer(handler, max_model_bytes, secure=credentials is not None,
                                   sites=sites)
        add_fl_service(self.servicer, self.server, upload_deadline)
        self._bind(SERVICE, "site port", host, port, credentials)
