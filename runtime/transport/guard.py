"""Hardened gRPC plumbing shared by the site port and the admin port.

- Every request is parsed by a *guarded* deserializer: a unary request over `MAX_UNARY_BYTES`
  is refused with RESOURCE_EXHAUSTED before protobuf parses (allocates) anything, and bytes that
  do not parse are refused with INVALID_ARGUMENT (gRPC's own handling would answer INTERNAL,
  "Exception deserializing request!"). The servicer never sees either.
- Client-streaming calls (result and job uploads) get a server-side deadline: a peer that opens
  the stream and then stalls is cancelled after `max_seconds`, so it cannot pin a worker.
- Handlers are built from the service's protobuf descriptor, so every method of the .proto is
  covered, with per-method (de)serializer overrides for the hand-encoded Frame streams.

The message-size ceiling of the whole port is gRPC's `grpc.max_receive_message_length`
(RESOURCE_EXHAUSTED before the bytes reach Python); these checks sit under it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import grpc

MAX_UNARY_BYTES = 1024 * 1024  # any non-streaming request: JSON arguments, site info, log batches
HEADROOM = 64 * 1024  # for the tag / length bytes and a header around a chunk


class RequestRefused(Exception):
    """A request refused before the servicer used it; `code` is the gRPC status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Bad:
    """What a guarded deserializer returns for bytes it refused (instead of raising, which gRPC
    would turn into INTERNAL)."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message


def guarded(parse: Callable[[bytes], Any], limit: int | None) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        if limit is not None and len(raw) > limit:
            return _Bad(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"request of {len(raw)} bytes is over the limit of {limit} bytes")
        try:
            return parse(raw)
        except Exception as e:  # noqa: BLE001 - any parse failure is the peer's malformed input
            return _Bad(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {str(e)[:200]}")
    return deserialize


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Bad):
            raise RequestRefused(request.code, request.message)
        yield request


def _with_deadline(context: grpc.ServicerContext, seconds: float | None) -> Callable[[], None]:
    """Cancel the call after `seconds`; returns the function that disarms the timer."""
    if not seconds:
        return lambda: None
    timer = threading.Timer(seconds, context.cancel)
    timer.daemon = True
    timer.start()
    return timer.cancel


def service_handler(service_name: str, service_descriptor: Any, messages: Any, servicer: Any, *,
                    deserializers: dict[str, Callable[[bytes], Any]] | None = None,
                    serializers: dict[str, Callable[[Any], bytes] | None] | None = None,
                    max_unary_bytes: int = MAX_UNARY_BYTES,
                    stream_deadline: float | None = None,
                    on_refused: Callable[[grpc.ServicerContext, RequestRefused], None] | None = None,
                    ) -> grpc.GenericRpcHandler:
    """A generic handler for every method of `service_descriptor` (a protobuf ServiceDescriptor)
    calling `servicer.<Method>`. Unary requests are size-capped and guarded; stream requests are
    guarded message by message (a bad one raises RequestRefused inside the servicer's loop, which
    its error mapping turns into the status) and cancelled after `stream_deadline` seconds.
    `on_refused` is called (then the call aborted) for a refused unary request."""
    deserializers = deserializers or {}
    serializers = serializers or {}
    handlers = {}
    for name, method in service_descriptor.methods_by_name.items():
        req = getattr(messages, method.input_type.name)
        rep = getattr(messages, method.output_type.name)
        parse = deserializers.get(name, req.FromString)
        ser = serializers[name] if name in serializers else rep.SerializeToString
        behavior = getattr(servicer, name)
        client_streaming, server_streaming = method.client_streaming, method.server_streaming
        if client_streaming:
            des = guarded(parse, None)  # each message is capped by the port's receive limit
            behavior = _stream_request(behavior, stream_deadline)
        else:
            des = guarded(parse, max_unary_bytes)
            behavior = _unary_request(behavior, on_refused)
        kind = {(False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}[
            (client_streaming, server_streaming)]
        handlers[name] = kind(behavior, request_deserializer=des, response_serializer=ser)
    return grpc.method_handlers_generic_handler(service_name, handlers)


def _unary_request(behavior: Callable, on_refused: Callable | None) -> Callable:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Bad):
            if on_refused is not None:
                on_refused(context, RequestRefused(request.code, request.message))
            context.abort(request.code, request.message)
        return behavior(request, context)
    return call


def _stream_request(behavior: Callable, deadline: float | None) -> Callable:
    def call(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        disarm = _with_deadline(context, deadline)
        try:
            return behavior(_checked(request_iterator), context)
        finally:
            disarm()
    return call
