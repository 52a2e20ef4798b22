"""A result upload names its task in its header: the site port checks that the task is the
sender's before it reads a byte of the model (a 1 GiB upload for someone else's task, or for no
task, is refused at once, not read whole first)."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from runtime.model import FLModel
from runtime.proto import fl_pb2
from runtime.server.engine import ServerEngine
from runtime.transport.frames import data_frame, header_frame
from runtime.transport.grpc_client import GrpcSiteTransport
from runtime.transport.grpc_server import SERVICE, FLServer

CHUNK = 4 * 1024 * 1024
FRAMES = 256  # 1 GiB in all, made as it is sent


@pytest.fixture
def server(tmp_path):
    engine = ServerEngine(tmp_path / "server")
    fl = FLServer(engine, "127.0.0.1", 0).start()
    for site in ("site-1", "site-2"):
        engine.register(site, {})
    yield engine, fl
    fl.stop(0)
    engine.close()


def upload(address: str, task_id: str, site: str) -> tuple[grpc.RpcError, int, float]:
    pulled = [0]
    payload = b"\0" * CHUNK

    def frames():
        yield header_frame(json.dumps({"task_id": task_id, "job_id": "j", "site": site,
                                       "ok": True, "has_model": True}))
        for _ in range(FRAMES):
            pulled[0] += 1
            yield data_frame(payload)

    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 2 * CHUNK)]) as ch:
        call = ch.stream_unary(f"/{SERVICE}/SubmitResult", request_serializer=None,
                               response_deserializer=fl_pb2.Ack.FromString)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            call(frames(), timeout=60)
        return e.value, pulled[0], time.monotonic() - start


def test_a_result_for_no_task_is_refused_before_its_model_is_read(server):
    engine, fl = server
    err, pulled, seconds = upload(fl.address, "no-such-task", "site-1")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is not expected" in err.details()
    assert pulled < FRAMES // 8, pulled  # what gRPC had in flight, not the 1 GiB


def test_a_result_for_another_sites_task_is_refused_before_its_model_is_read(server):
    engine, fl = server
    engine.assign_task("j", "site-2", "train", FLModel(params={}), None, lambda r: None,
                       task_id="t2")
    err, pulled, _ = upload(fl.address, "t2", "site-1")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "was assigned to site-2, not site-1" in err.details()
    assert pulled < FRAMES // 8, pulled
    got = []  # site-2's own result for it still goes through
    engine.cancel_task("t2")
    engine.assign_task("j", "site-2", "train", FLModel(params={}), None, got.append, task_id="t3")
    t = GrpcSiteTransport(fl.address)
    try:
        from runtime.transport.base import TaskResult
        import numpy as np

        t.submit_result(TaskResult("t3", "j", "site-2", True, FLModel(params={"w": np.ones(3)})))
    finally:
        t.close()
    assert got and got[0].ok and list(got[0].model.params["w"]) == [1.0, 1.0, 1.0]
