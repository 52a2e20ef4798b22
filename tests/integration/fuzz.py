"""Hostile calls on a server's admin and site ports: random JSON for every field the server
reads, wrong types, huge and deep values, odd text, raw proto fields. Used by
tests/integration/test_fuzz.py (a few hundred calls) and tests/benchmarks/fuzz_campaign.py
(thousands); what matters is the status code of each call: never INTERNAL, never a hang."""

from __future__ import annotations

import collections
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import grpc

from runtime.proto import admin_pb2, admin_pb2_grpc, fl_pb2, fl_pb2_grpc

KEYS = ["job", "name", "status", "limit", "include_done", "user", "site", "last", "action",
        "target", "sites", "lines", "follow", "types", "since", "json", "kind"]
JSON_METHODS = ["Jobs", "JobDetails", "AbortJob", "DeleteJob", "CloneJob", "Sites",
                "GpuHistory", "SystemInfo", "Operate"]
ODD_TEXT = ["", " ", "\x00", "..", "../../etc/passwd", "/etc/passwd", "site-1", "site-1/../x",
            "COMPLETED", "RUNNING", "last", "*", "%", "' OR 1=1 --", "\ud800", "\U0001f600" * 50,
            "a" * 100_000, "\n" * 1000, "shutdown", "restart", "remove_client", "server",
            "client", "0" * 36]
ODD_INTS = [0, -1, 1, 2, 2**31, 2**63, -(2**63) - 1, 10**30, 2**64 + 5]
ODD_FLOATS = [0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf")]


def deep(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


@dataclass
class Tally:
    codes: collections.Counter = field(default_factory=collections.Counter)
    internal: list[str] = field(default_factory=list)  # what got INTERNAL (or UNKNOWN)
    calls: int = 0

    def record(self, what: str, code: grpc.StatusCode | None, details: str = "") -> None:
        self.calls += 1
        self.codes[code.name if code else "OK"] += 1
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            self.internal.append(f"{what[:300]} -> {code.name}: {details[:300]}")


class Fuzzer:
    def __init__(self, admin_address: str, fl_address: str | None = None, seed: int = 0,
                 job_ids: list[str] | None = None) -> None:
        self.rng = random.Random(seed)
        self.admin_channel = grpc.insecure_channel(admin_address)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.admin_channel)
        self.fl_channel = grpc.insecure_channel(fl_address) if fl_address else None
        self.fl = fl_pb2_grpc.FLServiceStub(self.fl_channel) if self.fl_channel else None
        self.job_ids = job_ids or []
        self.tally = Tally()

    def close(self) -> None:
        self.admin_channel.close()
        if self.fl_channel is not None:
            self.fl_channel.close()

    # ---- values ------------------------------------------------------------------------------

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if r < 0.1:
            return None
        if r < 0.18:
            return self.rng.choice([True, False])
        if r < 0.32:
            return self.rng.choice(ODD_INTS + [self.rng.randint(-10, 10)])
        if r < 0.4:
            return self.rng.choice(ODD_FLOATS)
        if r < 0.65:
            return self.rng.choice(ODD_TEXT + self.job_ids + [j[:4] for j in self.job_ids])
        if depth > 3:
            return "x"
        if r < 0.8:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.rng.choice(KEYS + ["", "\x00"]): self.value(depth + 1)
                for _ in range(self.rng.randint(0, 4))}

    def field(self) -> str:
        """A value as a proto string field carries it (valid UTF-8 only)."""
        return str(self.value()).encode("utf-8", "replace").decode("utf-8")

    def request_text(self) -> str:
        r = self.rng.random()
        if r < 0.06:
            return self.rng.choice([deep(100_000), deep(50_000, "{\"a\":", "}"), "{", "[1,",
                                    "nul", "\"\\ud800\"", "1e999999", "-", "{}" * 10])
        if r < 0.12:
            return json.dumps(self.value())  # not an object (mostly)
        args = {k: self.value() for k in self.rng.sample(KEYS, self.rng.randint(0, 5))}
        return json.dumps(args)

    # ---- calls -------------------------------------------------------------------------------

    def _unary(self, what: str, call: Callable[[], Any]) -> None:
        try:
            call()
            self.tally.record(what, None)
        except grpc.RpcError as e:
            self.tally.record(what, e.code(), e.details() or "")

    def _stream(self, what: str, call: Callable[[], Any], limit: int = 3) -> None:
        try:
            for i, _ in enumerate(call()):
                if i + 1 >= limit:
                    break
            self.tally.record(what, None)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a followed log may run on
                self.tally.record(what, e.code(), e.details() or "")
            else:
                self.tally.record(what, None)

    def one_admin_call(self) -> None:
        method = self.rng.choice(JSON_METHODS + ["Hello", "DownloadJob", "TailLog", "Events", "SubmitJob"])
        if method in JSON_METHODS:
            text = self.request_text()
            if method == "Operate":  # keep the federation under test up: no shutdown or
                text = text.replace("shutdown", "shutd0wn").replace("restart", "rest4rt")  # restart
            req = admin_pb2.JsonRequest(json=text)
            self._unary(f"{method} {text}", lambda: getattr(self.admin, method)(req, timeout=10))
        elif method == "DownloadJob":
            ref = self.field()
            self._stream(f"DownloadJob {ref!r}",
                         lambda: self.admin.DownloadJob(admin_pb2.JobRef(job=ref), timeout=10))
        elif method == "TailLog":
            job, site = self.field(), self.field()
            lines = self.rng.choice([0, -1, 5, 2**31 - 1, -(2**31)])
            req = admin_pb2.TailRequest(job=job, site=site, lines=lines,
                                        follow=self.rng.random() < 0.2)
            self._stream(f"TailLog {job!r} {site!r} {lines}",
                         lambda: self.admin.TailLog(req, timeout=1))
        elif method == "Hello":
            req = admin_pb2.HelloRequest(api=self.rng.choice([0, -1, 2, 2**31 - 1]), client=self.field())
            self._unary(f"Hello {req.api}", lambda: self.admin.Hello(req, timeout=10))
        elif method == "Events":
            types = [self.field() for _ in range(self.rng.randint(0, 3))]
            kw = {"since": self.rng.choice(ODD_INTS[:5] + [2**63 - 1])} if self.rng.random() < 0.5 else {}
            req = admin_pb2.WatchRequest(types=types, **kw)
            self._stream(f"Events {types} {kw}", lambda: self.admin.Events(req, timeout=0.5), limit=2)
        else:
            header = self.request_text()
            chunks = [admin_pb2.Chunk(header=header, data=self.rng.randbytes(self.rng.randint(0, 64)))]
            if self.rng.random() < 0.5:
                chunks.append(admin_pb2.Chunk(data=b"PK\x03\x04" + self.rng.randbytes(200)))
            self._unary(f"SubmitJob {header[:80]}",
                        lambda: self.admin.SubmitJob(iter(chunks), timeout=10))

    def one_site_call(self) -> None:
        assert self.fl is not None
        method = self.rng.choice(["Register", "Heartbeat", "ReportJob", "LogMetrics", "ShipLog",
                                  "Goodbye", "GetJob", "Poll", "SubmitResult"])
        site = self.field()
        if site in ("site-1", "site-2"):  # the federation's own sites: on an insecure port anyone
            site += "x"  # may speak for them, which is what TLS is for (test_security.py)
        text = self.request_text()
        if method in ("Register", "Heartbeat", "Goodbye"):
            req = fl_pb2.SiteRequest(site=site, json=text)
            self._unary(f"{method} {site!r} {text}", lambda: getattr(self.fl, method)(req, timeout=10))
        elif method == "ReportJob":
            req = fl_pb2.ReportJobRequest(site=site, job_id=self.field(), state=self.field(),
                                          detail=text, has_detail=True)
            self._unary(f"ReportJob {site!r}", lambda: self.fl.ReportJob(req, timeout=10))
        elif method == "LogMetrics":
            req = fl_pb2.MetricsRequest(site=site, job_id=self.field(), records_json=text)
            self._unary(f"LogMetrics {text}", lambda: self.fl.LogMetrics(req, timeout=10))
        elif method == "ShipLog":
            req = fl_pb2.LogRequest(site=site, job_id=self.field(), text=text)
            self._unary(f"ShipLog {site!r}", lambda: self.fl.ShipLog(req, timeout=10))
        elif method == "GetJob":
            req = fl_pb2.JobRequest(site=site, job_id=self.field())
            self._stream(f"GetJob {site!r}", lambda: self.fl.GetJob(req, timeout=10))
        elif method == "Poll":
            req = fl_pb2.PollRequest(sites=[site], timeout=self.rng.choice([0.0, 0.1, -1.0, 1e9]),
                                     job_id=self.field())
            self._stream(f"Poll {site!r}", lambda: self.fl.Poll(req, timeout=1))
        else:
            head = {"task_id": self.value(), "job_id": self.value(), "site": site,
                    "ok": self.value(), "error": self.value(), "seconds": self.value(),
                    "has_model": self.value()}
            from runtime.transport.frames import data_frame, header_frame

            frames = [header_frame(json.dumps(head) if self.rng.random() < 0.8 else text)]
            if self.rng.random() < 0.5:
                frames.append(data_frame(self.rng.randbytes(self.rng.randint(0, 256))))
            call = self.fl_channel.stream_unary("/flshell.fl.FLService/SubmitResult",
                                                request_serializer=None,
                                                response_deserializer=fl_pb2.Ack.FromString)
            self._unary(f"SubmitResult {json.dumps(head, default=str)[:200]}",
                        lambda: call(iter(frames), timeout=10))

    def run(self, n: int, site_share: float = 0.3) -> Tally:
        for _ in range(n):
            if self.fl is not None and self.rng.random() < site_share:
                self.one_site_call()
            else:
                self.one_admin_call()
        return self.tally
