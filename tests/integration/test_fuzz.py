"""Hostile calls on both ports of a real server (tests/integration/fuzz.py): every one gets a
clean status naming what is wrong, never INTERNAL or UNKNOWN, and the server serves on."""

from __future__ import annotations

import grpc
import pytest

from runtime.admin import Session
from tests.integration.conftest import HELLO_NUMPY, grpc_federation
from tests.integration.fuzz import Fuzzer

CALLS = 300  # tests/benchmarks/fuzz_campaign.py runs thousands


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    with grpc_federation(tmp_path_factory.mktemp("fuzz")) as f:
        with Session(f.address, timeout=30) as s:
            f.job_id = s.submit_job(HELLO_NUMPY)
            assert s.wait_for_job(f.job_id, timeout=120)["status"] == "COMPLETED"
        yield f


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_calls_get_clean_errors(fed, seed):
    fuzzer = Fuzzer(fed.address, fed.fl.address, seed=seed, job_ids=[fed.job_id])
    try:
        tally = fuzzer.run(CALLS // 2)
    finally:
        fuzzer.close()
    assert tally.calls == CALLS // 2
    assert tally.internal == [], "\n".join(tally.internal)
    assert tally.codes["INVALID_ARGUMENT"] > 0 and tally.codes["OK"] > 0  # it probed both sides


@pytest.mark.parametrize("request_json, field", [
    ('{"status": 1}', "status must be a status or a list of them, got 1"),
    ('{"status": ["RUNNING", ["x"]]}', "unknown job status ['x']"),
    ('{"limit": 9223372036854775808}', "limit must be an integer from 0 to"),
    ('{"limit": "5"}', "limit must be an integer"),
    ('{"name": {"a": 1}}', "name must be a job name"),
    ('{"include_done": "no"}', '"include_done" must be true or false'),
    ("[" * 100_000 + "]" * 100_000, "nests arrays or objects too deeply"),
])
def test_list_jobs_names_the_bad_field(fed, request_json, field):
    from runtime.proto import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel(fed.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            admin_pb2_grpc.AdminServiceStub(ch).Jobs(admin_pb2.JsonRequest(json=request_json),
                                                         timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert field in e.value.details()


def test_the_server_still_serves_after_the_fuzzing(fed):
    for rec in fed.engine.sites.all():  # the fuzzer registered sites that never answer
        if rec.name not in ("site-1", "site-2"):
            fed.engine.remove_site(rec.name)
    with Session(fed.address, timeout=30) as s:
        job_id = s.submit_job(HELLO_NUMPY)
        assert s.wait_for_job(job_id, timeout=120)["status"] == "COMPLETED"
