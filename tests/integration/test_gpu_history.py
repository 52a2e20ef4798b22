"""Per-GPU load end to end: a real server (engine, FL port, admin port on 127.0.0.1) and a real
site agent heartbeating over gRPC, its GPUs read through a fixed inventory that stands in for
NVML (this host has none), its GPU process a grandchild of a real job process; the server keeps
the history, and `flshell --server ADDR -c gpu` (a real CLI process) shows it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from runtime.admin import BadArgument, Session
from runtime.client.agent import SiteAgent
from runtime.client.apps import DownloadedApps
from runtime.client.sitelog import LogSink
from runtime.monitor import use_nvml
from runtime.server.admin_service import AdminServer
from runtime.server.engine import ServerEngine
from runtime.server.manager import JobManager
from runtime.transport.grpc_client import GrpcSiteTransport
from runtime.transport.grpc_server import FLServer
from tests.gpu_standins import FakeGpu, FixedNvml, process_tree
from tests.integration.conftest import describe, run_flshell

JOB = "5eed0000-0000-4000-8000-00000000cafe"
UTILS = (10, 50, 90)  # what the GPU reads, in turn, one reading per heartbeat


class CyclingNvml(FixedNvml):
    """GPU 0's utilisation goes round UTILS, one step per reading."""

    def __init__(self, *gpus: FakeGpu) -> None:
        super().__init__(*gpus)
        self.readings = 0

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        if h is self.gpus[0]:
            h.util = UTILS[self.readings % len(UTILS)]
            self.readings += 1
        return super().nvmlDeviceGetUtilizationRates(h)


class JobSite(SiteAgent):
    """A site agent that says it runs JOB in `job_pid` (as ProcessSiteAgent says of its children)."""

    job_pid: int | None = None

    def heartbeat_info(self) -> dict[str, Any]:
        return {"jobs": [JOB], "job_pids": {JOB: self.job_pid}} if self.job_pid else super().heartbeat_info()


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def federation(tmp_path):
    engine = ServerEngine(tmp_path / "server", heartbeat_interval=0.05)
    fl = FLServer(engine).start()
    manager = JobManager(engine, schedule_interval=0.1).start()
    admin = AdminServer(manager).start()
    sink = LogSink(interval=0.2)
    transport = GrpcSiteTransport(fl.address)
    agent = JobSite("site-1", transport, DownloadedApps(transport, "site-1", tmp_path / "site-1"),
                    tmp_path / "site-1", sink, poll_timeout=0.5)
    try:
        yield engine, admin, agent
    finally:
        use_nvml(None)
        agent.stop(timeout=5)
        transport.close()
        sink.close()
        admin.stop(0)
        manager.stop(abort_running=True, timeout=10)
        fl.stop(0)
        engine.close()


def test_a_sites_gpu_load_its_history_and_a_host_without_gpus_in_the_console(federation, tmp_path):
    engine, admin, agent = federation
    use_nvml(FixedNvml())  # first, NVML answers but there is no GPU
    agent.start(heartbeats=True)
    with Session(admin.address, timeout=10) as s:
        wait_for("a heartbeat without GPUs",
                 lambda: (s.list_sites() or [{}])[0].get("info", {}).get("gpu_note") == "no GPU")
        plain = run_flshell("--server", admin.address, "-c", "gpu")
        assert plain.returncode == 0, describe(plain)
        assert ["site-1", "-", "no", "GPU"] == plain.stdout.splitlines()[-1].split()
        assert s.gpu_history() == {}
        for bad in ({"last": 0}, {"site": "../etc"}):
            with pytest.raises(BadArgument):
                s.gpu_history(**bad)

        with process_tree(tmp_path, depth=2) as (job_proc, script, grandchild):
            agent.job_pid = job_proc
            nvml = CyclingNvml(FakeGpu(mem_used=30 * 1024**3, temperature=63, power_mw=212_000,
                                       pids={grandchild: 30 * 1024**3}))
            use_nvml(nvml)  # now the host has a GPU, and the job's script's child computes on it
            def six_samples() -> dict | None:
                series = s.gpu_history("site-1").get("site-1", {}).get(0)
                return series if series and len(series["t"]) >= 6 else None

            series = wait_for("six samples of GPU 0 on the server", six_samples)
            assert series["t"] == sorted(series["t"]) and len(set(series["t"])) == len(series["t"])
            utils = [int(u) for u in series["util"]]
            start = UTILS.index(utils[0])
            assert utils == [UTILS[(start + i) % 3] for i in range(len(utils))]  # every beat, in order
            assert set(series["mem_used"]) == {30 * 1024**3}
            sites = s.list_sites()
            assert sites[0]["info"]["gpu_note"] is None  # a note that no longer holds is cleared
            assert sites[0]["info"]["gpus"][0]["processes"] == [
                {"pid": grandchild, "job_id": JOB, "mem_used": 30 * 1024**3}]  # through its parents

            table = run_flshell("--server", admin.address, "-c", "gpu")
            as_json = run_flshell("--server", admin.address, "--format", "json", "-c", "gpu site-1")
    assert table.returncode == 0, describe(table)
    row = table.stdout.splitlines()[-1].split()
    assert row[:4] == ["site-1", "0", "NVIDIA", "H100"] and row[-7:] == [
        "/", "80.0", "GiB", "63°C", "212", "W", JOB[:8]]
    spark = next(cell for cell in row if set(cell) <= set("▁▂▃▄▅▆▇█"))
    assert len(spark) >= 6 and set(spark) == {"▁", "▅", "█"}  # 10 %, 50 %, 90 %
    assert as_json.returncode == 0, describe(as_json)
    (doc,) = json.loads(as_json.stdout)
    gpu = doc["gpus"][0]
    assert doc["site"] == "site-1" and gpu["jobs"] == [JOB] and gpu["util_percent"] in UTILS
    assert len(gpu["history"]["util"]) >= 6 and set(gpu["history"]["util"]) <= set(map(float, UTILS))

    agent.stop(timeout=5)  # it says goodbye: DISCONNECTED, its history stays (it may come back)
    with Session(admin.address, timeout=10) as s:
        assert len(s.gpu_history()["site-1"][0]["t"]) >= 6
        engine.remove_site("site-1")  # an operator's remove_client: the server forgets it
        assert s.gpu_history() == {}
