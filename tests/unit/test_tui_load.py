"""1000 sites heartbeating through the live feed's batching path: the event queue stays bounded
(heartbeats coalesce per site) and the app keeps answering keys while the beats pour in."""

from __future__ import annotations

from runtime.admin.session import Event

from flshell.tui import ScriptedSource, make_app
from flshell.tui.demo import NOW
from flshell.tui.feed import EventQueue
from flshell.tui.testing import run, until
from flshell.tui.widgets.sites import SitesTable

N_SITES = 1000
ROUNDS = 10          # heartbeats per site
KEYS_PER_ROUND = 5   # key presses while each round of beats is on its way
GPU_SITES = 4        # sites that report a GPU, to check that coalesced beats keep their samples


def beats(round: int) -> list[Event]:
    out = []
    for i in range(N_SITES):
        info = {"host": {"cpu_percent": float(round)}, "jobs": []}
        if i < GPU_SITES:
            info["gpus"] = [{"index": 0, "util_percent": float(10 * round), "mem_used": 1, "mem_total": 2}]
        out.append(Event(None, NOW, "heartbeat", {"site": f"site-{i:04d}", "info": info}))
    return out


def test_a_thousand_heartbeating_sites_keep_the_queue_bounded_and_the_keys_answered():
    sites = [{"name": f"site-{i:04d}", "status": "CONNECTED", "last_seen": NOW, "heartbeat_age": 0.0,
              "info": {"host": {}, "jobs": []}} for i in range(N_SITES)]
    src = ScriptedSource([], sites, now=NOW)
    queue = EventQueue()

    async def scenario() -> None:
        app = make_app(src, queue=queue)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.screen.query_one(SitesTable)
            await until(pilot, lambda: len(table.keys) == N_SITES and src.watching, "1000 sites listed")
            table.focus()
            presses = 0
            for r in range(ROUNDS):
                src.push(*beats(r))  # the feed thread reads them while the keys are pressed
                for _ in range(KEYS_PER_ROUND):
                    await pilot.press("down")
                    presses += 1
            assert table.cursor_row == presses, "every key press was handled, in order"
            await until(pilot, lambda: queue.received == N_SITES * ROUNDS and not len(queue),
                        "every heartbeat read and drained", timeout=60)
            await pilot.pause()
            assert queue.high_water <= N_SITES, f"the queue held {queue.high_water} entries"
            assert app.batches >= 2, "the beats were applied in several batches, not one"
            host = app.state.sites["site-0999"]["info"]["host"]
            assert host["cpu_percent"] == ROUNDS - 1, "the latest beat of each site won"
            history = list(app.state.gpu_util[("site-0000", 0)])
            assert history == [10.0 * r for r in range(ROUNDS)], "coalesced beats kept their GPU samples"
            assert table.get_cell("site-0999", "cpu") == f"{ROUNDS - 1}%"

    run(scenario())
