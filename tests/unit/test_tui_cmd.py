"""`flshell tui` arguments: where it attaches, and what it says when it cannot."""

from __future__ import annotations

import argparse
import socket

from flshell import exit_codes, tui_cmd
from flshell.tui.app import FlshellTui
from runtime import paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_sub_command_and_its_options():
    parser = argparse.ArgumentParser(prog="flshell")
    tui_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tui", "--server", "h:1", "--readonly", "--refresh", "2"])
    assert (args.command, args.server, args.readonly, args.refresh, args.poc) == ("tui", "h:1", True, 2.0, None)
    assert parser.parse_args(["tui", "--poc"]).poc == str(paths.default("poc"))


def test_an_unreachable_server_is_an_error_before_any_screen(capsys):
    assert tui_cmd.main(["--server", f"127.0.0.1:{free_port()}"]) == exit_codes.CONNECTION
    assert "unreachable" in capsys.readouterr().err


def test_no_poc_and_bad_site_counts(tmp_path, capsys):
    assert tui_cmd.main(["--poc", str(tmp_path / "none")]) == exit_codes.CONNECTION
    assert "poc" in capsys.readouterr().err.lower()
    assert tui_cmd.main(["--sites", "0"]) == exit_codes.USAGE


def test_without_a_server_it_runs_on_an_embedded_local_federation(tmp_path, monkeypatch):
    seen: list = []

    def run(self: FlshellTui) -> None:  # instead of taking over the terminal
        seen.append((self.source.address, sorted(s["name"] for s in self.source.session.list_sites())))
    monkeypatch.setattr(FlshellTui, "run", run)
    assert tui_cmd.main(["--local-workspace", str(tmp_path / "fed"), "--sites", "3"]) == exit_codes.OK
    ((address, sites),) = seen
    assert address.startswith("127.0.0.1:") and sites == ["site-1", "site-2", "site-3"]
