"""GrpcSiteTransport: a site's (or a host's sites') connection to the server's site port."""

from __future__ import annotations

import json
from typing import Any, Iterator

import grpc

from runtime.proto import fl_pb2, fl_pb2_grpc
from runtime.transport.base import (
    JobEnd,
    SiteCommand,
    JobStart,
    SiteMessage,
    SiteTransport,
    TaskAssignment,
    TaskResult,
    TransportError,
    NotRegistered,
)
from runtime.transport.frames import data_frame, decode_frame, header_frame
from runtime.transport.grpc_server import MAX_MESSAGE, SERVICE
from runtime.wire import DEFAULT_CHUNK_SIZE, ModelAssembler, WireError, iter_model_chunks

CALL_DEADLINE = 30.0  # seconds for calls that do not wait on purpose
# The server refuses requests over 1 MiB (runtime.transport.guard.MAX_UNARY_BYTES): what a site
# sends in one call stays well under it.
MAX_LOG_CHARS = 128 * 1024  # characters of log text per ShipLog call
MAX_DETAIL_CHARS = 64 * 1024  # characters of a job report's detail (a traceback...)
MAX_REQUEST_TEXT = 512 * 1024  # characters of JSON per LogMetrics call, before splitting


_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED})


def _error(e: grpc.RpcError) -> TransportError:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    text = f"{details} ({code.name if code else 'rpc error'})"
    if code == grpc.StatusCode.NOT_FOUND:  # the server's NotRegistered: register again
        return NotRegistered(text)
    return TransportError(text, retryable=code in _RETRYABLE)


def _json_text(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TransportError(f"{what} is not JSON-compatible: {e}") from None


class GrpcSiteTransport(SiteTransport):
    """Insecure for now (loopback, POC); the security issue passes channel credentials."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE),
                   # gRPC's own reconnect backoff starts at 1 s; ours (runtime.client.backoff)
                   # paces retries, so a site sees a server that just came up within ~0.1 s
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        self.channel = (grpc.secure_channel(address, credentials, options) if credentials
                        else grpc.insecure_channel(address, options))
        self.stub = fl_pb2_grpc.FLServiceStub(self.channel)
        # the Frame streams skip protobuf objects (runtime.transport.frames: same bytes on the wire)
        self._poll_call = self.channel.unary_stream(
            f"/{SERVICE}/Poll", request_serializer=fl_pb2.PollRequest.SerializeToString,
            response_deserializer=decode_frame)
        self._get_job_call = self.channel.unary_stream(
            f"/{SERVICE}/GetJob", request_serializer=fl_pb2.JobRequest.SerializeToString,
            response_deserializer=decode_frame)
        self._submit_call = self.channel.stream_unary(
            f"/{SERVICE}/SubmitResult", request_serializer=None,
            response_deserializer=fl_pb2.Ack.FromString)
        self.chunk_size = chunk_size
        self._closed = False

    def _call(self, method, request, timeout: float = CALL_DEADLINE):
        if self._closed:
            raise TransportError("transport is closed")
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            raise _error(e) from None

    def register(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        reply = self._call(self.stub.Register,
                           fl_pb2.SiteRequest(site=site, json=_json_text(info, "site info")))
        return json.loads(reply.json)

    def heartbeat(self, site: str, info: dict[str, Any]) -> dict[str, Any]:
        reply = self._call(self.stub.Heartbeat,
                           fl_pb2.SiteRequest(site=site, json=_json_text(info, "heartbeat info")))
        return json.loads(reply.json)

    def _poll(self, sites: list[str], timeout: float,
              job_id: str | None = None) -> list[tuple[str, SiteMessage]]:
        if self._closed:
            raise TransportError("transport is closed")
        out: list[tuple[str, SiteMessage]] = []
        try:
            frames = self._poll_call(fl_pb2.PollRequest(sites=sites, timeout=timeout,
                                                        job_id=job_id or ""),
                                     timeout=timeout + CALL_DEADLINE)
            head: dict[str, Any] | None = None
            asm: ModelAssembler | None = None
            for frame in frames:  # a task's model is assembled as it arrives: ~1x its size
                if frame.header:
                    if head is not None:
                        out.append((head["site"], _message(head, asm)))
                    head = json.loads(frame.header)
                    asm = ModelAssembler() if head.get("kind") == "task" else None
                elif asm is not None:
                    asm.feed(frame.data)
                else:
                    raise TransportError("model bytes for a message that carries no model")
            if head is not None:
                out.append((head["site"], _message(head, asm)))
        except grpc.RpcError as e:
            raise _error(e) from None
        return out

    def poll(self, site: str, timeout: float, job_id: str | None = None) -> SiteMessage | None:
        got = self._poll([site], timeout, job_id)
        return got[0][1] if got else None

    def poll_many(self, sites: set[str], timeout: float) -> list[tuple[str, SiteMessage]]:
        return self._poll(sorted(sites), timeout)

    def submit_result(self, result: TaskResult) -> None:
        model_frames: Iterator[bytes] | None = None
        if result.model is not None:
            try:  # plan before sending: what cannot travel fails the task, not the stream;
                # the frames themselves are made as gRPC sends them (no second copy of the model)
                model_frames = iter_model_chunks(result.model, self.chunk_size, copy=False)
            except WireError as e:
                result = TaskResult(result.task_id, result.job_id, result.site, False, None,
                                    f"result could not be sent: {e}", result.seconds)
        head = {"task_id": result.task_id, "job_id": result.job_id, "site": result.site,
                "ok": result.ok, "error": result.error, "seconds": result.seconds,
                "has_model": model_frames is not None}

        def frames() -> Iterator[bytes]:
            yield header_frame(json.dumps(head))
            for chunk in model_frames or []:
                yield data_frame(chunk)

        self._call(self._submit_call, frames(), timeout=CALL_DEADLINE * 4)

    def report_job(self, site: str, job_id: str, state: str, detail: str | None = None) -> None:
        if detail is not None and len(detail) > MAX_DETAIL_CHARS:  # the server caps requests
            half = MAX_DETAIL_CHARS // 2
            detail = f"{detail[:half]}\n[... {len(detail) - 2 * half} characters cut ...]\n{detail[-half:]}"
        self._call(self.stub.ReportJob, fl_pb2.ReportJobRequest(
            site=site, job_id=job_id, state=state, detail=detail or "", has_detail=detail is not None))

    def log_metrics(self, site: str, job_id: str, records: list[dict[str, Any]]) -> None:
        text = _json_text(records, "metric records")
        if len(text) > MAX_REQUEST_TEXT and len(records) > 1:  # the server caps requests: split
            half = len(records) // 2
            self.log_metrics(site, job_id, records[:half])
            self.log_metrics(site, job_id, records[half:])
            return
        self._call(self.stub.LogMetrics, fl_pb2.MetricsRequest(
            site=site, job_id=job_id, records_json=text))

    def get_job(self, site: str, job_id: str) -> bytes:
        if self._closed:
            raise TransportError("transport is closed")
        try:
            frames = self._get_job_call(fl_pb2.JobRequest(site=site, job_id=job_id),
                                        timeout=CALL_DEADLINE * 4)
            return b"".join(f.data for f in frames)
        except grpc.RpcError as e:
            raise _error(e) from None

    def ship_log(self, site: str, job_id: str, text: str) -> None:
        # pieces of at most MAX_LOG_CHARS characters (<= 4 bytes each in UTF-8): under the cap
        for i in range(0, max(len(text), 1), MAX_LOG_CHARS):
            self._call(self.stub.ShipLog, fl_pb2.LogRequest(site=site, job_id=job_id,
                                                            text=text[i:i + MAX_LOG_CHARS]))

    def goodbye(self, site: str) -> None:
        if not self._closed:
            self._call(self.stub.Goodbye, fl_pb2.SiteRequest(site=site))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.channel.close()


def _message(head: dict[str, Any], asm: ModelAssembler | None) -> SiteMessage:
    kind = head.get("kind")
    if kind == "job_start":
        return JobStart(head["job_id"], head["job_name"], head["app_name"], head.get("meta") or {})
    if kind == "job_end":
        return JobEnd(head["job_id"], head["status"])
    if kind == "site_command":
        return SiteCommand(str(head["action"]))
    if kind == "task":
        if asm is None:
            raise TransportError("a task without its model")

        def materialize():
            return asm.result()

        return TaskAssignment(head["task_id"], head["job_id"], head["task_name"], None,
                              head.get("timeout"), materialize=materialize)
    raise TransportError(f"unknown message kind {kind!r} from the server")
