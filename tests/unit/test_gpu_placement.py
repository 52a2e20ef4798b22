"""GPU inventories, resource_spec parsing, the site's allocator and the server's placement check
(runtime.resources), and the job manager's use of them on a real engine without sites' processes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.jobs import JobError, load_job
from runtime.resources import (GIB, Gpu, GpuAllocator, GpuInventory, GpuRequest, GpuReservations,
                               GpuSpecError, NotPlaceable, ResourceSpecError, SiteGpus, choose_gpus,
                               detect_gpus, gpu_requests, parse_resource_spec, place, request_for)

TWO_16 = GpuInventory.parse("0:16,1:16")
JOB = Path(__file__).resolve().parents[1] / "integration" / "jobs" / "gpu_report"


# ---- inventories -------------------------------------------------------------------------------

def test_a_gpu_list_names_ids_and_optionally_their_memory():
    assert TWO_16 == GpuInventory((Gpu(0, 16 * GIB), Gpu(1, 16 * GIB)))
    assert GpuInventory.parse(" 3, 1 ") == GpuInventory((Gpu(1, None), Gpu(3, None)))  # sorted
    assert GpuInventory.parse("0:40.5,1").gpus == (Gpu(0, int(40.5 * GIB)), Gpu(1, None))
    assert len(GpuInventory.parse("none")) == len(GpuInventory.parse("")) == 0
    assert TWO_16.to_info() == [{"index": 0, "mem_total": 16 * GIB}, {"index": 1, "mem_total": 16 * GIB}]
    assert TWO_16.describe() == "2 GPUs (0: 16 GiB, 1: 16 GiB)"
    assert GpuInventory().describe() == "no GPUs"


@pytest.mark.parametrize("text, message", [
    ("gpu0", "expected GPU ids like 0,1 or id:GiB like 0:16,1:16 (or none), got 'gpu0': 'gpu0' is not a GPU id"),
    ("0,,1", "'' is not a GPU id"),
    ("0:", "GPU 0: expected its memory in GiB (a number > 0) after ':', got ''"),
    ("0:-8", "got '-8'"),
    ("0:nan", "got 'nan'"),
    ("0,1,0:8", "GPU 0 is listed twice in '0,1,0:8'"),
])
def test_a_bad_gpu_list_says_what_to_write(text, message):
    with pytest.raises(GpuSpecError) as e:
        GpuInventory.parse(text)
    assert message in str(e.value)


def test_an_inventory_from_a_sites_report_leaves_out_what_is_malformed():
    report = [{"index": 1, "mem_total": 8 * GIB, "name": "A100"}, {"index": 0}, {"index": "2"},
              {"index": True}, {"index": -1}, "junk", {"index": 1, "mem_total": 1}]
    assert GpuInventory.from_info(report).gpus == (Gpu(0, None), Gpu(1, 8 * GIB, "A100"))
    assert GpuInventory.from_info(None) == GpuInventory.from_info({"index": 0}) == GpuInventory()


class FakeNvml:
    """pynvml's calls that detect_gpus makes, for two cards; the second hides its memory."""

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        if h == 1:
            raise RuntimeError("not supported")
        return SimpleNamespace(total=80 * GIB)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100"


def test_detection_reads_nvml_and_finds_nothing_without_it(monkeypatch):
    from runtime.monitor import load

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(load, "_nvml", lambda: FakeNvml())
    assert detect_gpus().gpus == (Gpu(0, 80 * GIB, "NVIDIA H100"), Gpu(1, None, "NVIDIA H100"))
    monkeypatch.setattr(load, "_nvml", lambda: None)
    assert detect_gpus() == GpuInventory()
    broken = FakeNvml()
    broken.nvmlDeviceGetCount = lambda: (_ for _ in ()).throw(RuntimeError("driver gone"))
    monkeypatch.setattr(load, "_nvml", lambda: broken)
    assert detect_gpus() == GpuInventory()


@pytest.mark.parametrize("visible, indices", [("1", [1]), ("0,1", [0, 1]), ("", []), ("-1", []),
                                              ("1,GPU-abc,0", [1]), ("7", [])])
def test_an_agent_started_with_cuda_visible_devices_offers_only_those(monkeypatch, visible, indices):
    from runtime.monitor import load

    monkeypatch.setattr(load, "_nvml", lambda: FakeNvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [g.index for g in detect_gpus().gpus] == indices


# ---- resource_spec -----------------------------------------------------------------------------

def test_resource_spec_entries_become_requests_and_at_all_covers_every_other_site():
    spec = {"site-1": {"num_of_gpus": 2, "mem_per_gpu_in_GiB": 8, "cpu": 4},
            "@ALL": {"num_of_gpus": 1}, "site-3": {"mem_per_gpu_in_GiB": 8}}
    requests = parse_resource_spec(spec)
    assert requests == {"site-1": GpuRequest(2, 8.0), "@ALL": GpuRequest(1, 0.0),
                        "site-3": GpuRequest(0, 8.0)}
    assert request_for(requests, "site-1") == GpuRequest(2, 8.0)
    assert request_for(requests, "site-2") == GpuRequest(1, 0.0)
    assert request_for(requests, "site-3") is None  # no GPU asked of it: no pinning either
    assert gpu_requests(["site-1", "site-2", "site-3"], spec) == {"site-1": GpuRequest(2, 8.0),
                                                                  "site-2": GpuRequest(1, 0.0)}
    assert gpu_requests(["site-1"], {}) == {} and gpu_requests(["site-1"], None) == {}
    assert GpuRequest(2, 8).describe() == "2 GPU(s) with >= 8 GiB"
    assert GpuRequest(1).describe() == "1 GPU(s)"


@pytest.mark.parametrize("spec, keys, message", [
    ({"site-1": 2}, ("site-1",), 'expected an object like {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}, got 2'),
    ({"site-1": {"num_of_gpus": "2"}}, ("site-1", "num_of_gpus"), 'expected a whole number >= 0, got "2"'),
    ({"site-1": {"num_of_gpus": 1.5}}, ("site-1", "num_of_gpus"), "got 1.5"),
    ({"site-1": {"num_of_gpus": True}}, ("site-1", "num_of_gpus"), "got true"),
    ({"site-1": {"num_of_gpus": -1}}, ("site-1", "num_of_gpus"), "got -1"),
    ({"@ALL": {"mem_per_gpu_in_GiB": "8G"}}, ("@ALL", "mem_per_gpu_in_GiB"),
     'expected a number of GiB >= 0, got "8G"'),
    ([1], (), "expected an object (site -> resources), got [1]"),
])
def test_a_bad_resource_spec_names_the_field(spec, keys, message):
    with pytest.raises(ResourceSpecError) as e:
        parse_resource_spec(spec)
    assert e.value.keys == keys and e.value.message.endswith(message)


def test_the_job_loader_rejects_a_bad_resource_spec_naming_meta_json_and_the_path(tmp_path):
    import shutil

    job = tmp_path / "job"
    shutil.copytree(JOB, job)
    meta = json.loads((job / "meta.json").read_text())
    meta["resource_spec"] = {"site-1": {"num_of_gpus": "two"}}
    (job / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(JobError) as e:
        load_job(job)
    assert str(e.value) == 'meta.json: resource_spec["site-1"].num_of_gpus: expected a whole number >= 0, got "two"'
    meta["resource_spec"] = {"@ALL": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": -2}}
    (job / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(JobError) as e:
        load_job(job)
    assert e.value.file == "meta.json" and e.value.json_path == 'resource_spec["@ALL"].mem_per_gpu_in_GiB'


# ---- choosing and allocating -------------------------------------------------------------------

def test_the_lowest_free_gpus_with_enough_memory_are_chosen():
    mixed = GpuInventory.parse("0:8,1:24,2:24,3")
    assert choose_gpus(mixed, {}, 1) == [0]
    assert choose_gpus(mixed, {}, 2, 16) == [1, 2]
    assert choose_gpus(mixed, {1: "held by job x"}, 2, 16) == [2, 3]  # unknown memory: any size
    assert choose_gpus(mixed, {}, 0, 100) == []


@pytest.mark.parametrize("inventory, taken, num, mem, reason", [
    (GpuInventory(), {}, 1, 0, "has no GPUs"),
    (TWO_16, {}, 3, 0, "needs 3 GPU(s), has 2"),
    (TWO_16, {}, 1, 24, "needs 1 GPU(s) with >= 24 GiB, 0 of its 2 have that much memory "
                        "(GPU 0: 16 GiB, GPU 1: 16 GiB)"),
    (TWO_16, {0: "held by job abc12345"}, 2, 8,
     "needs 2 GPU(s) with >= 8 GiB, 1 of 2 free (GPU 0 held by job abc12345)"),
    (GpuInventory.parse("0:8,1:24,2:24"), {2: "reserved for job f00"}, 2, 16,
     "needs 2 GPU(s) with >= 16 GiB, 1 of 2 free (GPU 2 reserved for job f00)"),
])
def test_a_request_that_does_not_fit_says_why(inventory, taken, num, mem, reason):
    with pytest.raises(NotPlaceable) as e:
        choose_gpus(inventory, taken, num, mem)
    assert e.value.reason == reason


def test_the_allocator_gives_each_job_its_own_gpus_and_takes_them_back():
    alloc = GpuAllocator(TWO_16)
    assert alloc.allocate("job-a-0000", 1, 8) == [0]
    assert alloc.allocate("job-b-0000", 1, 8) == [1]
    assert alloc.allocate("job-a-0000", 1, 8) == [0]  # asked again: what it holds
    with pytest.raises(NotPlaceable) as e:
        alloc.allocate("job-c-0000", 1, 8)
    assert e.value.reason == ("needs 1 GPU(s) with >= 8 GiB, 0 of 2 free "
                              "(GPU 0 held by job job-a-00, GPU 1 held by job job-b-00)")
    assert alloc.holders() == {"job-a-0000": [0], "job-b-0000": [1]}
    assert alloc.release("job-a-0000") == [0]
    assert alloc.release("job-a-0000") == []  # twice (a crash and a stop): harmless
    assert alloc.allocate("job-c-0000", 1, 8) == [0]
    assert alloc.holders() == {"job-b-0000": [1], "job-c-0000": [0]}
    assert alloc.allocate("cpu-only", 0) == [] and "cpu-only" not in alloc.holders()


def test_the_allocator_waits_for_gpus_that_ending_jobs_are_about_to_free():
    alloc = GpuAllocator(GpuInventory.parse("0"))
    alloc.allocate("ending", 1)
    asked: list[list[str]] = []

    def ending(holders: list[str]) -> bool:
        asked.append(holders)  # the release below runs once the allocator waits (it holds its lock)
        threading.Thread(target=alloc.release, args=("ending",)).start()
        return holders == ["ending"]

    assert alloc.allocate("next", 1, wait_while=ending, timeout=60) == [0]
    assert asked == [["ending"]]
    with pytest.raises(NotPlaceable):  # holders that are not ending: no wait
        alloc.allocate("third", 1, wait_while=lambda holders: False, timeout=60)
    with pytest.raises(NotPlaceable):  # no time to wait
        alloc.allocate("third", 1, wait_while=lambda holders: pytest.fail("asked"), timeout=0)


# ---- the server's view and placement -----------------------------------------------------------

def test_a_sites_view_comes_from_its_report_and_the_servers_reservations():
    info = {"gpu_inventory": TWO_16.to_info(), "gpu_alloc": {"j1": [1], "bad": "x", "j2": [True, 0]}}
    view = SiteGpus.from_info(info, [("r1", GpuRequest(1))])
    assert view.inventory == TWO_16 and view.held == {"j1": [1], "j2": [0]}
    assert view.taken() == {1: "held by job j1", 0: "held by job j2"}  # r1 fits nowhere: takes none
    view = SiteGpus.from_info({"gpu_inventory": TWO_16.to_info(), "gpu_alloc": {"j1": [0]}},
                              [("r1-long-job-id", GpuRequest(1, 8))])
    assert view.taken() == {0: "held by job j1", 1: "reserved for job r1-long-"}
    assert SiteGpus.from_info({}).inventory == GpuInventory()


def test_place_lets_a_job_start_only_where_every_site_has_its_gpus():
    views = {"site-1": SiteGpus(TWO_16, {"job-a-000": [0]}),
             "site-2": SiteGpus(TWO_16, {}, [("job-b-000", GpuRequest(2))]),
             "site-3": SiteGpus(GpuInventory())}
    one = {"@ALL": {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}}
    assert place(["site-1"], one, views) is None
    assert place(["site-1", "site-2", "site-3"], {}, views) is None  # asks for no GPU
    assert place(["site-1", "site-2", "site-3", "site-4"], one, views) == (
        "waiting for GPUs: site-2 needs 1 GPU(s) with >= 8 GiB, 0 of 2 free "
        "(GPU 0 reserved for job job-b-00, GPU 1 reserved for job job-b-00); "
        "site-3 has no GPUs; site-4 has no GPUs")
    assert place(["site-1", "site-3"], {"site-1": {"num_of_gpus": 2}}, views) == (
        "waiting for GPUs: site-1 needs 2 GPU(s), 1 of 2 free (GPU 0 held by job job-a-00)")


def test_reservations_last_until_the_site_reports_the_job_or_a_report_after_it_ended():
    book = GpuReservations()
    book.reserve("j1", {"site-1": GpuRequest(1), "site-2": GpuRequest(1)})
    book.reserve("j0", {})  # asks for no GPU: nothing to book
    before: dict = {}
    book.settle("site-1", before)  # a report from before the site took the job
    assert book.for_site("site-1") == [("j1", GpuRequest(1))]
    book.settle("site-1", {"j1": [0]})  # the site holds them now: its reports count from here
    assert book.for_site("site-1") == [] and book.for_site("site-2") == [("j1", GpuRequest(1))]
    report = {}
    book.end("j1", {"site-2": report})
    book.settle("site-2", report)  # the same report as when the job ended: still booked
    assert book.for_site("site-2") == [("j1", GpuRequest(1))]
    book.settle("site-2", {})  # a newer one: what it says now stands
    assert book.for_site("site-2") == []
    book.reserve("j2", {"site-1": GpuRequest(1)})
    book.end("j2", {})
    book.settle("site-1", None)  # a site that reports no allocations: gone with the job
    assert book.for_site("site-1") == []


# ---- the job manager on a real engine ----------------------------------------------------------

def _job(tmp: Path, name: str, spec: dict) -> Path:
    import shutil

    folder = tmp / name
    shutil.copytree(JOB, folder)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "name": name, "resource_spec": spec}))
    return folder


def test_the_scheduler_books_gpus_it_starts_and_a_job_that_waits_holds_up_no_later_one(tmp_path):
    from runtime.server.engine import ServerEngine
    from runtime.server.manager import JobManager

    engine = ServerEngine(tmp_path / "server")
    manager = JobManager(engine, max_jobs=4, ready_timeout=60)  # scheduled by hand, no thread
    try:
        engine.register("site-1", {"job_processes": True, "gpu_inventory": TWO_16.to_info(),
                                   "gpu_alloc": {"elsewhere": [0]}})
        big = manager.submit_folder(_job(tmp_path, "big", {"site-1": {"num_of_gpus": 2}}), "t")
        small = manager.submit_folder(_job(tmp_path, "small", {"@ALL": {"num_of_gpus": 1}}), "t")
        later = manager.submit_folder(_job(tmp_path, "later", {"@ALL": {"num_of_gpus": 1}}), "t")
        manager.schedule_once()
        assert manager.settle()
        jobs = {j["job_id"]: j for j in manager.list_jobs()}
        assert jobs[big]["status"] == "WAITING"
        assert jobs[big]["reason"] == ("waiting for GPUs: site-1 needs 2 GPU(s), 1 of 2 free "
                                       "(GPU 0 held by job elsewher)")
        assert small in manager.runners  # younger, fits: not held up by the big one
        assert jobs[later]["reason"] == ("waiting for GPUs: site-1 needs 1 GPU(s), 0 of 2 free "
                                         f"(GPU 0 held by job elsewher, GPU 1 reserved for job {small[:8]})")
        engine.heartbeat("site-1", {"gpu_alloc": {"elsewhere": [0], small: [1]}})
        manager.schedule_once()
        assert manager.settle()
        assert manager.gpu_bookings.for_site("site-1") == []  # the site reported it
        assert manager.get_job(later)["reason"].endswith(f"(GPU 0 held by job elsewher, GPU 1 held by job {small[:8]})")
        engine.heartbeat("site-1", {"gpu_alloc": {}})  # everything freed
        manager.schedule_once()
        assert manager.settle()
        assert big in manager.runners and later not in manager.runners  # oldest first again
    finally:
        manager.stop(abort_running=True, timeout=10)
        engine.close()
