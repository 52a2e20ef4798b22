"""Which worker process hosts which simulated site, and which GPU group each worker sees."""

from __future__ import annotations

import os

import pytest

from runtime.sim.simulator import SimUsageError, Simulator, parse_gpus
from runtime.sim.workers import PlanError, plan_workers

SITES = [f"site-{i}" for i in range(1, 9)]


def layout(plan):
    return [(w.index, w.gpu, w.sites) for w in plan]


def test_without_gpus_sites_go_round_robin_over_t_workers():
    assert layout(plan_workers(SITES, 2, [])) == [
        (1, None, ["site-1", "site-3", "site-5", "site-7"]),
        (2, None, ["site-2", "site-4", "site-6", "site-8"]),
    ]


def test_more_workers_than_sites_starts_one_per_site():
    assert layout(plan_workers(SITES[:3], 8, [])) == [
        (1, None, ["site-1"]), (2, None, ["site-2"]), (3, None, ["site-3"])]


def test_default_worker_count_is_the_cpu_count_capped_by_the_sites():
    plan = plan_workers(SITES, None, [])
    assert len(plan) == min(len(SITES), os.cpu_count() or 1)
    assert sorted(s for w in plan for s in w.sites) == sorted(SITES)


def test_gpu_ids_alternate_site_by_site():
    """-gpu 0,1: site i on GPU i mod 2 (site-1, site-3.. on GPU 0), one worker per GPU."""
    assert layout(plan_workers(SITES, None, parse_gpus("0,1"))) == [
        (1, "0", ["site-1", "site-3", "site-5", "site-7"]),
        (2, "1", ["site-2", "site-4", "site-6", "site-8"]),
    ]


def test_gpu_groups_with_two_workers_each():
    """-gpu [0,1],[2,3] -t 4: workers 1 and 3 see GPUs 0,1; 2 and 4 see 2,3; a group's sites
    alternate between its workers."""
    plan = plan_workers(SITES, 4, parse_gpus("[0,1],[2,3]"))
    assert layout(plan) == [
        (1, "0,1", ["site-1", "site-5"]),
        (2, "2,3", ["site-2", "site-6"]),
        (3, "0,1", ["site-3", "site-7"]),
        (4, "2,3", ["site-4", "site-8"]),
    ]
    for w in plan:  # every site sits on group (i-1) mod 2
        for s in w.sites:
            assert w.gpu == ["0,1", "2,3"][(int(s.split("-")[1]) - 1) % 2]


def test_fewer_workers_than_gpu_groups_is_refused():
    with pytest.raises(PlanError, match=r"-t 1: fewer workers than the 2 GPU groups"):
        plan_workers(SITES, 1, ["0", "1"])


def test_more_gpu_groups_than_sites_starts_no_idle_worker():
    plan = plan_workers(["site-1"], None, ["0", "1", "2"])
    assert layout(plan) == [(1, "0", ["site-1"])]


def test_the_simulator_refuses_the_plan_before_anything_runs(tmp_path):
    from tests.integration.conftest import HELLO_NUMPY

    sim = Simulator(HELLO_NUMPY, workspace=tmp_path / "ws", n_clients=4, threads=1, gpu="0,1")
    with pytest.raises(SimUsageError, match="fewer workers than the 2 GPU groups"):
        sim.prepare()
    assert not (tmp_path / "ws").exists()


def test_gpu_implies_worker_processes(tmp_path):
    from tests.integration.conftest import HELLO_NUMPY

    sim = Simulator(HELLO_NUMPY, workspace=tmp_path / "ws", n_clients=4, gpu="0,0")
    sim.prepare()
    assert sim.processes and sim.transport_kind == "grpc"
    assert [w.gpu for w in sim.worker_plan] == ["0", "0"]  # two workers on one GPU


@pytest.mark.parametrize("text, shown", [("0,1", "0,1"), ("[0,1],[2,3]", "[0,1],[2,3]"),
                                         ("[0, 1], [2,3]", "[0,1],[2,3]"), ("[1],[0]", "1,0")])
def test_gpu_groups_are_shown_as_the_option_takes_them(text, shown):
    """What `flshell sim` prints of -gpu (the header line, the no-GPU note): groups stay groups."""
    from runtime.sim.simulator import format_gpus

    assert format_gpus(parse_gpus(text)) == shown
