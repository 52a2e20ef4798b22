"""The TUI on a real embedded server (LocalFederation, admin port on 127.0.0.1:0), driven headless
with App.run_test(): a job submitted through the `s` prompt appears and runs to COMPLETED, `a`
plus the dialog aborts a running job on the server, and the disconnect banner comes and goes
with the admin port."""

from __future__ import annotations

from pathlib import Path

import pytest

from flshell.tui import SessionSource, make_app
from flshell.tui.messages import ConnectionLost, JobsUpdated, RoundCompleted
from flshell.tui.screens.dialogs import ConfirmScreen, PathPrompt
from flshell.tui.testing import cell, run, until
from flshell.tui.widgets.jobs import JobsTable
from flshell.tui.widgets.status import Banner, StatusLine
from runtime.admin import Session
from runtime.server.admin_service import AdminServer
from runtime.federation import LocalFederation
from tests.integration.conftest import HELLO_NUMPY, copy_job, edit_json

SIZE = (120, 36)


def slow_job(tmp_path: Path, rounds: int = 60, pause: float = 0.5) -> Path:
    """hello-numpy with `rounds` rounds of at least `pause` seconds each: long enough to abort."""
    job = copy_job(HELLO_NUMPY, tmp_path, "slow-numpy")
    edit_json(job / "app" / "config" / "config_server.json", lambda c: c.update(num_rounds=rounds))
    edit_json(job / "meta.json", lambda m: m.update(name="slow-numpy"))
    client = job / "app" / "custom" / "client.py"
    text = client.read_text()
    text = text.replace("import argparse\n", "import argparse\nimport time\n", 1)
    text = text.replace("        model = flare.receive()\n",
                        f"        model = flare.receive()\n        time.sleep({pause})\n", 1)
    client.write_text(text)
    return job


@pytest.mark.slow
def test_a_job_submitted_from_the_tui_appears_progresses_and_completes(tmp_path):
    async def scenario() -> None:
        with LocalFederation(tmp_path / "fed", n_sites=2) as fed, Session(fed.admin_address) as s:
            messages: list = []
            app = make_app(SessionSource(s), refresh=1.0)
            async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
                await until(pilot, lambda: app.connection == "connected" and len(app.state.sites) == 2,
                            "the TUI to connect and list both sites")
                await pilot.press("s")
                await until(pilot, lambda: isinstance(app.screen, PathPrompt), "the submit prompt")
                await pilot.press(*str(HELLO_NUMPY), "enter")
                table = app.screen.query_one(JobsTable)  # the main screen again
                await until(pilot, lambda: len(table.keys) == 1, "the job in the Jobs table")
                (job_id,) = table.keys
                await until(pilot, lambda: cell(table, job_id, "status") == "COMPLETED",
                            "the job to reach COMPLETED in the table", timeout=90)
                assert cell(table, job_id, "name") == "hello-numpy"
                assert cell(table, job_id, "round").endswith("5/5")
                assert s.get_job(job_id)["status"] == "COMPLETED"  # what the server says too
            rounds = [m.round for m in messages if isinstance(m, RoundCompleted) and m.job_id == job_id]
            assert rounds == [0, 1, 2, 3, 4], "the table heard every round as it completed"
            assert any(isinstance(m, JobsUpdated) and job_id in m.job_ids for m in messages)

    run(scenario())


@pytest.mark.slow
def test_abort_through_the_dialog_aborts_the_job_on_the_server(tmp_path):
    async def scenario() -> None:
        with LocalFederation(tmp_path / "fed", n_sites=2) as fed, Session(fed.admin_address) as s:
            job_id = s.submit_job(slow_job(tmp_path))
            app = make_app(SessionSource(s), refresh=1.0)
            async with app.run_test(size=SIZE) as pilot:
                table = app.screen.query_one(JobsTable)
                await until(pilot, lambda: job_id in table.keys and cell(table, job_id, "status") == "RUNNING",
                            "the slow job RUNNING in the table", timeout=60)
                table.select(job_id)
                await pilot.press("a")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the abort dialog")
                assert job_id[:8] in str(app.screen.question) and "slow-numpy" in app.screen.question
                await pilot.press("enter")  # "No" has the focus: nothing happens
                await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the dialog to close")
                await pilot.pause(0.3)
                assert s.get_job(job_id)["status"] == "RUNNING"
                await pilot.press("a")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the abort dialog again")
                await pilot.click("#yes")
                await until(pilot, lambda: s.get_job(job_id)["status"] == "ABORTED",
                            "the server to abort the job", timeout=30)
                await until(pilot, lambda: cell(table, job_id, "status") == "ABORTED",
                            "ABORTED in the Jobs table")

    run(scenario())


@pytest.mark.slow
def test_the_disconnect_banner_appears_when_the_server_stops_and_clears_when_it_returns(tmp_path):
    async def scenario() -> None:
        with LocalFederation(tmp_path / "fed", n_sites=1) as fed, Session(fed.admin_address) as s:
            port = int(fed.admin_address.rsplit(":", 1)[1])
            messages: list = []
            app = make_app(s, refresh=1.0)  # a Session is wrapped in a SessionSource
            async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
                banner, status = app.screen.query_one(Banner), app.screen.query_one(StatusLine)
                # the status line follows the connection on its next refresh: wait for both
                await until(pilot, lambda: app.connection == "connected" and app.state.sites
                            and status.has_class("-connected"), "the TUI to connect")
                assert not banner.display

                fed.admin_server.stop(0.5)  # the admin port goes away; the federation keeps running
                await until(pilot, lambda: banner.display and status.has_class("-disconnected"),
                            "the disconnect banner", timeout=30)
                assert app.connection == "disconnected"
                assert app.screen.has_class("-offline")  # stale data greyed
                assert "site-1" in app.state.sites, "the last data stays on screen"
                await until(pilot, lambda: app.attempt >= 2, "a second reconnect attempt", timeout=30)
                assert f"attempt {app.attempt}" in str(banner.render())

                fed.admin_server = AdminServer(fed.manager, "127.0.0.1", port).start()  # back, same port
                await until(pilot, lambda: not banner.display and status.has_class("-connected"),
                            "the banner to clear", timeout=30)
                assert app.connection == "connected"
                assert not app.screen.has_class("-offline")
            attempts = [m.attempt for m in messages if isinstance(m, ConnectionLost)]
            assert attempts[:2] == [1, 2], "the reconnect counter counts up"

    run(scenario())
