"""The site port: a gRPC servicer that unpacks calls, runs the FLHandler, maps errors to codes."""

from __future__ import annotations

import json
from concurrent import futures
from typing import Any, Iterator

import grpc

from runtime.proto import fl_pb2, fl_pb2_grpc
from runtime.transport.frames import data_frame, decode_frame, header_frame
from runtime.transport.health import ServingPort

SERVICE = "flshell.fl.FLService"
from runtime.transport.base import FLHandler, JobEnd, JobStart, SiteMessage, TaskAssignment, TaskResult, TransportError
from runtime.wire import DEFAULT_CHUNK_SIZE, ModelAssembler, WireError, iter_model_chunks

MAX_MESSAGE = 16 * 1024 * 1024  # frames are a few MiB; anything bigger is refused by gRPC


def message_frames(site: str, msg: SiteMessage, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """A site message as encoded frames (runtime.transport.frames): a header frame, then (for a
    task) its model's wire bytes, each chunk copied once, straight into its frame."""
    if isinstance(msg, JobStart):
        head = {"kind": "job_start", "job_id": msg.job_id, "job_name": msg.job_name,
                "app_name": msg.app_name, "meta": msg.meta}
    elif isinstance(msg, JobEnd):
        head = {"kind": "job_end", "job_id": msg.job_id, "status": msg.status}
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
        raise TransportError(f"{what} is not valid JSON: {e}") from None


class FLServicer(fl_pb2_grpc.FLServiceServicer):
    """Thin: every method unpacks, calls the handler, packs. TransportError -> FAILED_PRECONDITION
    (or UNAVAILABLE when the server shuts down); bad input -> INVALID_ARGUMENT."""

    def __init__(self, handler: FLHandler, max_model_bytes: int | None = None) -> None:
        self.handler = handler
        self.max_model_bytes = max_model_bytes

    def _abort(self, context: grpc.ServicerContext, e: Exception) -> None:
        text = str(e)
        code = grpc.StatusCode.UNAVAILABLE if "shutting down" in text else (
            grpc.StatusCode.INVALID_ARGUMENT if isinstance(e, (WireError, ValueError))
            and not isinstance(e, TransportError) else grpc.StatusCode.FAILED_PRECONDITION)
        context.abort(code, text)

    def Register(self, request, context):
        try:
            reply = self.handler.register(request.site, _json(request.json, "site info"))
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.JsonReply(json=json.dumps(reply))

    def Heartbeat(self, request, context):
        try:
            reply = self.handler.heartbeat(request.site, _json(request.json, "heartbeat"))
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.JsonReply(json=json.dumps(reply))

    def Poll(self, request, context):
        sites = list(request.sites)
        timeout = max(0.0, min(request.timeout, 60.0))
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
        except (TransportError, WireError, ValueError, KeyError, TypeError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def ReportJob(self, request, context):
        try:
            self.handler.report_job(request.site, request.job_id, request.state,
                                    request.detail if request.has_detail else None)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def LogMetrics(self, request, context):
        try:
            self.handler.log_metrics(request.site, request.job_id,
                                     _json(request.records_json, "metric records"))
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def GetJob(self, request, context):
        try:
            data = self.handler.get_job(request.site, request.job_id)
        except (TransportError, ValueError, OSError) as e:
            self._abort(context, e)
        view = memoryview(data)
        for i in range(0, len(data), DEFAULT_CHUNK_SIZE):
            yield data_frame(view[i : i + DEFAULT_CHUNK_SIZE])

    def ShipLog(self, request, context):
        try:
            self.handler.ship_log(request.site, request.job_id, request.text)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()

    def Goodbye(self, request, context):
        try:
            self.handler.goodbye(request.site)
        except (TransportError, ValueError) as e:
            self._abort(context, e)
        return fl_pb2.Ack()


FRAME_STREAMS = {"Poll": "response", "GetJob": "response", "SubmitResult": "request"}


def add_fl_service(servicer: FLServicer, server: grpc.Server) -> None:
    """fl.proto's FLService, with its Frame streams encoded by runtime.transport.frames instead
    of protobuf objects (the same bytes on the wire, two copies fewer per chunk)."""
    import grpc as _grpc

    handlers = {}
    for name, method in fl_pb2.DESCRIPTOR.services_by_name["FLService"].methods_by_name.items():
        req = getattr(fl_pb2, method.input_type.name)
        rep = getattr(fl_pb2, method.output_type.name)
        des, ser = req.FromString, rep.SerializeToString
        if FRAME_STREAMS.get(name) == "response":
            ser = None  # the servicer yields encoded frames (bytes)
        elif FRAME_STREAMS.get(name) == "request":
            des = decode_frame
        kind = {(False, False): _grpc.unary_unary_rpc_method_handler,
                (False, True): _grpc.unary_stream_rpc_method_handler,
                (True, False): _grpc.stream_unary_rpc_method_handler,
                (True, True): _grpc.stream_stream_rpc_method_handler}[
            (method.client_streaming, method.server_streaming)]
        handlers[name] = kind(getattr(servicer, name), request_deserializer=des,
                              response_serializer=ser)
    server.add_generic_rpc_handlers((_grpc.method_handlers_generic_handler(SERVICE, handlers),))


class FLServer(ServingPort):
    """The site port as a context manager: binds `port` (0 = a free one) and reports it.

    Every site (and every job process of a site) holds one worker in a long poll, so
    `max_workers` bounds how many can be connected at once."""

    def __init__(self, handler: FLHandler, host: str = "127.0.0.1", port: int = 0,
                 max_workers: int = 256, max_model_bytes: int | None = None) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fl-rpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        add_fl_service(FLServicer(handler, max_model_bytes), self.server)
        self._bind(SERVICE, "site port", host, port)

