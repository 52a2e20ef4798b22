"""A provisioned federation under attack (reliability plan S1, S2, S3, S4, S7): a mutual-TLS
server in this process (real gRPC on 127.0.0.1) and real site processes started with their
startup kits. Wrong peers are refused at the handshake or by identity; oversized and malformed
messages are refused before they are used; and after all of it, well-behaved sites still run
hello-numpy to the end.

The module's tests share one server and run in file order; the last one is the proof that the
server still serves.
"""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
from pathlib import Path

import grpc
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning import parse_project, provision
from runtime.admin import Denied, ServerUnreachable, Session
from runtime.model import FLModel
from runtime.proto import admin_pb2, fl_pb2
from runtime.transport.frames import data_frame, header_frame
from runtime.transport.grpc_client import GrpcSiteTransport
from runtime.transport.grpc_server import MAX_FRAME_BYTES
from runtime.transport.guard import MAX_UNARY_BYTES
from runtime.wire.codec import MAGIC
from tests.integration.secure_fed import (ADMIN_METHODS, ADMIN_SERVICE, ADMINS, FL_METHODS,
                                          FL_SERVICE, HELLO, PROJECT, call_raw, channel,
                                          forged_credentials, kit_credentials, make_prod,
                                          rpc_error, site_process, start_server, stop_processes,
                                          wait_for)

C = grpc.StatusCode
WAIT = 120


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    prod = make_prod(root)
    other = provision(parse_project(PROJECT), root / "other")  # same names, another CA
    server = start_server(prod, root / "server")
    procs = []
    try:
        yield type("Fed", (), {"root": root, "prod": prod, "other": root / "other",
                               "server": server, "fl": server.fl_address,
                               "admin": server.admin_address, "procs": procs,
                               "other_kits": other})
    finally:
        stop_processes(procs)
        server.stop(0)


def admin_session(fed, who: str = "project_admin", timeout: float = 10.0) -> Session:
    return Session.from_startup_kit(fed.prod / ADMINS[who], address=fed.admin, timeout=timeout)


def register(ch: grpc.Channel, site: str) -> None:
    ch.unary_unary(f"/{FL_SERVICE}/Register")(
        fl_pb2.SiteRequest(site=site, json="{}").SerializeToString(), timeout=5)


# ---- S1: who may connect -----------------------------------------------------------------------

def _handshake_cases(fed):
    ca = (fed.prod / "ca" / "rootCA.pem").read_bytes()
    return {
        "plain text": None,
        "TLS, no client certificate": grpc.ssl_channel_credentials(root_certificates=ca),
        "certificate of another CA": kit_credentials(fed.other / "site-1"),
        "expired certificate": forged_credentials(fed.prod, "site-1", expired=True),
    }


@pytest.mark.parametrize("case", ["plain text", "TLS, no client certificate",
                                  "certificate of another CA", "expired certificate"])
def test_s1_handshake_refuses_peers_without_a_valid_certificate(fed, case):
    creds = _handshake_cases(fed)[case]
    t0 = time.monotonic()
    with channel(fed.fl, creds) as ch:
        e = rpc_error(register, ch, "site-1")
    assert e.code() == C.UNAVAILABLE, (case, e)
    with channel(fed.admin, creds) as ch:
        e = rpc_error(ch.unary_unary(f"/{ADMIN_SERVICE}/Sites"),
                      admin_pb2.JsonRequest(json="{}").SerializeToString(), timeout=5)
    assert e.code() == C.UNAVAILABLE, (case, e)
    assert time.monotonic() - t0 < 5  # refused at once, not after a timeout
    with admin_session(fed) as s:
        assert s.list_sites() == []  # nothing registered


def test_s1_a_ca_signed_certificate_outside_the_project_is_refused(fed):
    intruder = forged_credentials(fed.prod, "intruder", org="org-a")
    with channel(fed.fl, intruder) as ch:
        e = rpc_error(register, ch, "intruder")
    assert e.code() == C.UNAUTHENTICATED and "intruder is not a site of this project" in e.details()
    admin = forged_credentials(fed.prod, "boss@org-a.com", ou="project_admin")
    with Session(fed.admin, credentials=admin, timeout=5) as s:
        with pytest.raises(Denied, match="boss@org-a.com is not an admin of this project"):
            s.list_jobs()
    with admin_session(fed) as s:
        assert s.list_sites() == []
    audit = (fed.root / "server" / "audit.log").read_text()
    assert "boss@org-a.com is not an admin of this project" in audit


def test_s1_a_site_speaks_only_for_itself_and_roles_stay_on_their_port(fed, caplog):
    site1 = kit_credentials(fed.prod / "site-1")
    with channel(fed.fl, site1) as ch:
        e = rpc_error(register, ch, "site-2")
        assert e.code() == C.PERMISSION_DENIED
        assert "site site-1 cannot act for site 'site-2'" in e.details()
        poll = fl_pb2.PollRequest(sites=["site-2"], timeout=0.1).SerializeToString()
        assert call_raw(ch, FL_SERVICE, "Poll", poll) == C.PERMISSION_DENIED
        poll_both = fl_pb2.PollRequest(sites=["site-1", "site-2"], timeout=0.1).SerializeToString()
        assert call_raw(ch, FL_SERVICE, "Poll", poll_both) == C.PERMISSION_DENIED
        for method, req in (
                ("Heartbeat", fl_pb2.SiteRequest(site="site-2", json="{}")),
                ("ReportJob", fl_pb2.ReportJobRequest(site="site-2", job_id="x", state="FAILED")),
                ("LogMetrics", fl_pb2.MetricsRequest(site="site-2", job_id="x", records_json="[]")),
                ("ShipLog", fl_pb2.LogRequest(site="site-2", job_id="x", text="hi")),
                ("Goodbye", fl_pb2.SiteRequest(site="site-2")),
                ("GetJob", fl_pb2.JobRequest(site="site-2", job_id="x"))):
            assert call_raw(ch, FL_SERVICE, method, req.SerializeToString()) == C.PERMISSION_DENIED, method
        result = [header_frame(json.dumps({"task_id": "t", "job_id": "j", "site": "site-2",
                                           "ok": True, "has_model": False}))]
        assert call_raw(ch, FL_SERVICE, "SubmitResult", result) == C.PERMISSION_DENIED
    # an admin's certificate on the site port, a site's on the admin port
    with channel(fed.fl, kit_credentials(fed.prod / ADMINS["project_admin"])) as ch:
        e = rpc_error(register, ch, "admin@org-a.com")
        assert e.code() == C.PERMISSION_DENIED and "only sites" in e.details()
    with Session(fed.admin, credentials=site1, timeout=5) as s:
        with pytest.raises(Denied, match="admin certificates only"):
            s.list_sites()
    with admin_session(fed) as s:
        assert s.list_sites() == []  # none of it registered anything
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("refused a call from ipv4:127.0.0.1:" in w for w in warned) >= 10, warned


# ---- S3: oversized ------------------------------------------------------------------------------

def test_s3_messages_over_the_limits_are_refused_and_the_limits_themselves_pass(fed):
    fuzzer = kit_credentials(fed.prod / "fuzzer")
    with channel(fed.fl, fuzzer) as ch:
        # a unary request: a SiteRequest padded to exactly the limit, then one byte over
        def site_request(size: int) -> bytes:
            base = fl_pb2.SiteRequest(site="fuzzer", json="").SerializeToString()
            pad = size - len(base) - 4  # field 2: tag (1) + 3-byte length varint
            raw = fl_pb2.SiteRequest(site="fuzzer", json=" " * pad).SerializeToString()
            assert len(raw) == size
            return raw
        at = call_raw(ch, FL_SERVICE, "Heartbeat", site_request(MAX_UNARY_BYTES))
        assert at == C.INVALID_ARGUMENT  # taken in and parsed: blanks are not a JSON object
        over = rpc_error(ch.unary_unary(f"/{FL_SERVICE}/Heartbeat"),
                         site_request(MAX_UNARY_BYTES + 1), timeout=10)
        assert over.code() == C.RESOURCE_EXHAUSTED and "over the limit" in over.details()
        # a frame of a result stream: exactly the port's limit, then one byte over (the
        # stream's task must be the fuzzer's, or nothing after the header is read at all)
        register(ch, "fuzzer")
        fed.server.engine.assign_task("j", "fuzzer", "train", FLModel(params={}), None,
                                      lambda result: None, task_id="t")
        head = header_frame(json.dumps({"task_id": "t", "job_id": "j", "site": "fuzzer",
                                        "ok": True, "has_model": True}))
        exact = data_frame(b"\0" * (MAX_FRAME_BYTES - 5))  # tag + 4-byte length
        assert len(exact) == MAX_FRAME_BYTES
        assert call_raw(ch, FL_SERVICE, "SubmitResult", [head, exact], timeout=20) == C.INVALID_ARGUMENT
        big = data_frame(b"\0" * (MAX_FRAME_BYTES - 4))
        assert len(big) == MAX_FRAME_BYTES + 1
        assert call_raw(ch, FL_SERVICE, "SubmitResult", [head, big], timeout=20) == C.RESOURCE_EXHAUSTED
        # a model header that claims 100 GiB: refused from the header, nothing allocated
        header = json.dumps({"version": 1, "params": [{
            "name": "w", "kind": "numpy", "dtype": "float32", "shape": [25 * 1024 ** 3],
            "offset": 0, "nbytes": 100 * 1024 ** 3}], "model": {}}).encode()
        claim = MAGIC + struct.pack("<I", len(header)) + header
        rss = psutil.Process().memory_info().rss
        e = rpc_error(ch.stream_unary(f"/{FL_SERVICE}/SubmitResult"),
                      iter([head, data_frame(claim), data_frame(b"\0" * 1024)]), timeout=10)
        assert e.code() == C.RESOURCE_EXHAUSTED and "more than max_bytes" in e.details(), e
        assert psutil.Process().memory_info().rss - rss < 50 * 1024 * 1024
        fed.server.engine.cancel_task("t")
        fed.server.engine.remove_site("fuzzer")  # not a site the last test's job may wait for
    with channel(fed.admin, kit_credentials(fed.prod / ADMINS["lead_a"])) as ch:
        huge = admin_pb2.JsonRequest(json=" " * (MAX_UNARY_BYTES + 1)).SerializeToString()
        assert call_raw(ch, ADMIN_SERVICE, "Jobs", huge, timeout=10) == C.RESOURCE_EXHAUSTED
        chunk = admin_pb2.Chunk(data=b"\0" * (2 * 1024 * 1024)).SerializeToString()
        assert call_raw(ch, ADMIN_SERVICE, "SubmitJob", [chunk], timeout=10) == C.RESOURCE_EXHAUSTED


# ---- S2: fuzzed payloads ----------------------------------------------------------------------

def _seeds() -> dict[str, list[bytes]]:
    """Valid requests of each FL method to mutate: the fuzzer's own name only where a valid
    call cannot register it or hold a worker (no Register, Goodbye, Poll as itself)."""
    head = header_frame(json.dumps({"task_id": "t", "job_id": "j", "site": "fuzzer", "ok": False,
                                    "has_model": False, "error": "x", "seconds": 1.0}))
    return {
        "Register": [fl_pb2.SiteRequest(site="site-1", json='{"a": 1}').SerializeToString()],
        "Heartbeat": [fl_pb2.SiteRequest(site="fuzzer", json='{"jobs": []}').SerializeToString()],
        "Poll": [fl_pb2.PollRequest(sites=["site-2"], timeout=0.5, job_id="j").SerializeToString()],
        "ReportJob": [fl_pb2.ReportJobRequest(site="fuzzer", job_id="j", state="FAILED",
                                              detail="d", has_detail=True).SerializeToString()],
        "LogMetrics": [fl_pb2.MetricsRequest(site="fuzzer", job_id="j",
                                             records_json='[{"tag": "a", "value": 1}]').SerializeToString()],
        "ShipLog": [fl_pb2.LogRequest(site="fuzzer", job_id="j", text="log").SerializeToString()],
        "Goodbye": [fl_pb2.SiteRequest(site="site-1").SerializeToString()],
        "GetJob": [fl_pb2.JobRequest(site="fuzzer", job_id="j").SerializeToString()],
        "SubmitResult": [head, data_frame(MAGIC + struct.pack("<I", 2) + b"{}")],
    }


def _mutate(seed: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    b = bytearray(seed)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:max(0, len(b) - cut)])


ALLOWED = {C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED, C.PERMISSION_DENIED, C.UNAUTHENTICATED,
           C.FAILED_PRECONDITION, C.NOT_FOUND, C.OK}


def test_s2_fuzzed_payloads_get_clean_errors_and_the_server_stays_up(fed):
    seeds = _seeds()
    codes: dict[str, dict[str, int]] = {}
    bad: list[tuple[str, bytes, grpc.StatusCode]] = []
    latencies: list[float] = []
    spent: dict[str, float] = {}
    stop = threading.Event()
    ch = channel(fed.fl, kit_credentials(fed.prod / "fuzzer"))
    ach = channel(fed.admin, kit_credentials(fed.prod / ADMINS["lead_b"]))
    beat = GrpcSiteTransport(fed.fl, credentials=kit_credentials(fed.prod / "site-1"))
    beat.register("site-1", {"fuzz": True})

    def legit_heartbeats() -> None:  # a well-behaved site keeps its heartbeat while fuzzed
        while not stop.wait(0.05):
            t0 = time.perf_counter()
            beat.heartbeat("site-1", {"jobs": []})
            latencies.append(time.perf_counter() - t0)

    payload = st.one_of(
        st.binary(max_size=300),
        st.builds(_mutate, st.sampled_from([s for v in seeds.values() for s in v]),
                  st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
                  st.integers(0, 8)))

    @settings(max_examples=2000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(FL_METHODS), data=payload,
           split=st.integers(0, 3))
    def fuzz_fl(method: str, data: bytes, split: int) -> None:
        messages = [seeds["SubmitResult"][0], data] if (method == "SubmitResult" and split == 0) \
            else data
        t1 = time.perf_counter()
        code = call_raw(ch, FL_SERVICE, method, messages, timeout=5)
        spent[method] = spent.get(method, 0.0) + time.perf_counter() - t1
        codes.setdefault(method, {}).setdefault(code.name, 0)
        codes[method][code.name] += 1
        if code not in ALLOWED:
            bad.append((method, data, code))

    @settings(max_examples=500, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(ADMIN_METHODS),
           data=st.one_of(st.binary(max_size=300),
                          st.builds(lambda t: admin_pb2.JsonRequest(json=t).SerializeToString(),
                                    st.text(max_size=60))))
    def fuzz_admin(method: str, data: bytes) -> None:
        t1 = time.perf_counter()
        streams = method in ("Events", "TailLog")  # a valid one lasts until its deadline
        code = call_raw(ach, ADMIN_SERVICE, method, data, timeout=0.3 if streams else 5)
        spent["admin." + method] = spent.get("admin." + method, 0.0) + time.perf_counter() - t1
        codes.setdefault("admin." + method, {}).setdefault(code.name, 0)
        codes["admin." + method][code.name] += 1
        if code not in ALLOWED and not (streams and code == C.DEADLINE_EXCEEDED):
            bad.append((method, data, code))

    t = threading.Thread(target=legit_heartbeats, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        fuzz_fl()
        fuzz_admin()
    finally:
        stop.set()
        t.join(5)
        ch.close()
        ach.close()
        beat.goodbye("site-1")
        beat.close()
        with channel(fed.fl, kit_credentials(fed.prod / "fuzzer")) as bye:  # if it registered
            call_raw(bye, FL_SERVICE, "Goodbye", fl_pb2.SiteRequest(site="fuzzer").SerializeToString())
    took = time.monotonic() - t0
    total = sum(n for c in codes.values() for n in c.values())
    print(f"\n{total} fuzzed calls in {took:.1f}s: {json.dumps(codes, sort_keys=True)}")
    print({k: round(v, 2) for k, v in spent.items()})
    assert not bad, bad[:5]
    assert total >= 2500
    fl_errors = sum(n for m, c in codes.items() if not m.startswith("admin.")
                    for k, n in c.items() if k != "OK")
    assert fl_errors >= 1900  # next to nothing fuzzed is a valid call of the fuzzer's own
    latencies.sort()
    assert latencies and latencies[int(len(latencies) * 0.99) - 1] < 0.5, latencies[-5:]
    with admin_session(fed) as s:  # still up, and only the fuzzer itself may have registered
        assert {x["name"] for x in s.list_sites()} <= {"site-1", "fuzzer"}
        assert s.list_jobs() == []


# ---- S4 and deadlines: bounded concurrency, stalled uploads ------------------------------------

def test_s4_calls_past_the_bound_get_resource_exhausted_and_stalled_uploads_are_cut(tmp_path):
    from runtime.server.engine import ServerEngine
    from runtime.transport.grpc_server import FLServer

    engine = ServerEngine(tmp_path / "ws")
    engine.register("a", {})
    server = FLServer(engine, max_workers=4, upload_deadline=1.0).start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            poll = ch.unary_stream(f"/{FL_SERVICE}/Poll")
            req = fl_pb2.PollRequest(sites=["a"], timeout=1.5).SerializeToString()
            held = [poll(req, timeout=10) for _ in range(4)]  # every worker in a long poll
            wait_for(lambda: engine.sites.get("a").polls_in_flight == 4, "4 polls in flight", 10, 0.01)
            assert call_raw(ch, FL_SERVICE, "Heartbeat",
                            fl_pb2.SiteRequest(site="a", json="{}").SerializeToString()) \
                == C.RESOURCE_EXHAUSTED
            for h in held:
                assert list(h) == []  # each long poll ran its course: nothing to send
            # a task of a's, so the upload gets past its header (its model is never sent)
            engine.assign_task("j", "a", "train", FLModel(params={}), None, lambda r: None,
                               task_id="t")

            def stalled():
                yield header_frame(json.dumps({"task_id": "t", "job_id": "j", "site": "a",
                                               "ok": True, "has_model": True}))
                time.sleep(8)
                yield data_frame(b"x")

            t0 = time.monotonic()
            e = rpc_error(ch.stream_unary(f"/{FL_SERVICE}/SubmitResult"), stalled(), timeout=30)
            assert e.code() == C.CANCELLED and time.monotonic() - t0 < 5, e
    finally:
        server.stop(0)
        engine.close()


# ---- S7: a site's local policy vetoes custom code ----------------------------------------------

def test_s7_a_site_without_custom_code_refuses_the_job_with_its_reason(fed):
    procs = [site_process(fed.prod, name, fed.fl, fed.root / "sites" / name)
             for name in ("site-1", "site-3")]
    fed.procs.extend(procs)
    try:
        with admin_session(fed) as s:
            wait_for(lambda: {x["name"] for x in s.list_sites() if x["status"] == "CONNECTED"}
                     >= {"site-1", "site-3"}, "site-1 and site-3", 30)
            job_id = s.submit_job(HELLO)  # min_clients 2: with site-3 out it cannot run
            job = s.wait_for_job(job_id, timeout=WAIT, poll=1)
            assert job["status"] == "FAILED", job
            assert "failed to start: site-3" in job["reason"], job
            why = "site-3 does not allow custom code (local/site_policy.json)"
            detail = wait_for(lambda: s.get_job(job_id)["failure_details"].get("site-3"),
                              "the failure details (status.json)", 10)
            assert why in detail, detail
            orgs = {x["name"]: x["info"].get("org") for x in s.list_sites()}
            assert orgs["site-1"] == "org-a" and orgs["site-3"] == "org-b"  # from certificates
    finally:
        stop_processes([procs[1]])  # site-3 goes; site-1 stays for the last test


# ---- the server still serves -------------------------------------------------------------------

def test_after_all_that_valid_sites_run_hello_numpy_to_the_end(fed, tmp_path):
    procs = [p for p in fed.procs if p.poll() is None]
    names = {"site-1"} if procs else set()
    if not procs:
        procs.append(site_process(fed.prod, "site-1", fed.fl, fed.root / "sites" / "site-1"))
    procs.append(site_process(fed.prod, "site-2", fed.fl, fed.root / "sites" / "site-2"))
    fed.procs.extend(procs)
    names |= {"site-1", "site-2"}
    with admin_session(fed, "lead_a") as s:
        wait_for(lambda: {x["name"] for x in s.list_sites() if x["status"] == "CONNECTED"}
                 >= names, "site-1 and site-2", 30)
        job_id = s.submit_job(HELLO)
        job = s.wait_for_job(job_id, timeout=WAIT, poll=1)
        assert job["status"] == "COMPLETED", job
        assert job["submitter"] == "lead@org-a.com" and job["extra"]["submitter_org"] == "org-a"
        dest = s.download_job(job_id, tmp_path / "dl")
        assert {"site-1.log", "site-2.log"} <= {p.name for p in (dest / "logs").iterdir()}
    audit = [json.loads(line) for line in
             (fed.root / "server" / "audit.log").read_text().splitlines()]
    mine = [a for a in audit if a.get("job") == job_id]
    assert [a["verdict"] for a in mine if a["command"] == "job_status"][-1] == "COMPLETED"
    assert any(a["command"] == "download_job" and a["user"] == "lead@org-a.com" and
               a["verdict"] == "allowed" for a in mine)
    shutil.rmtree(tmp_path / "dl", ignore_errors=True)
