"""The TUI attaches to a mutual-TLS server with an admin's startup kit, through the same attach
path as `flshell tui --startup KIT`, and shows the server's sites and jobs."""

from __future__ import annotations

import argparse

from flshell.console_cmd import attached
from flshell.tui import make_app
from flshell.tui.testing import run, until
from tests.integration.secure_fed import ADMINS, make_prod, start_server


def test_tui_connects_with_an_admin_startup_kit(tmp_path):
    prod = make_prod(tmp_path)
    server = start_server(prod, tmp_path / "server")
    try:
        args = argparse.Namespace(server=server.admin_address, poc=None,
                                  startup=str(prod / ADMINS["member"]), user="admin", sites=2,
                                  local_workspace=None)

        async def scenario() -> None:
            with attached(args) as (session, _address, _what):
                assert not isinstance(session, int), "could not attach with the kit"
                app = make_app(session, refresh=1.0, readonly=True)
                async with app.run_test(size=(100, 30)) as pilot:
                    await until(pilot, lambda: app.connection == "connected",
                                "the TUI to connect over mutual TLS")
        run(scenario())
        audit = (tmp_path / "server" / "audit.log").read_text()
        assert ADMINS["member"] in audit  # the identity came from the certificate
    finally:
        server.stop()
