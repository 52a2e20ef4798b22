"""TailLog's reading of a job's log file: last lines, whole lines, and a follow that ends once
the job is done and the file stayed quiet, having asked the file's writer for what it holds."""

from __future__ import annotations

import threading

from runtime.server.log_tail import log_lines


def test_the_last_lines_then_whole_lines_only(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"one\ntwo\nthree\nfour")
    text = "".join(log_lines(open(path, "rb"), 2, False, lambda: True, lambda: True, threading.Event()))
    assert text == "three\nfour"


def test_a_follow_gets_what_the_writer_still_held_when_the_job_ended(tmp_path):
    """A site's last lines may sit in the server's buffer when its job ends: following asks
    for them (refresh) on every look, so they come before the follow ends."""
    path = tmp_path / "site-1.log"
    path.write_text("first\n")
    held = ["last words\n"]

    def refresh() -> None:
        with open(path, "a") as f:
            f.write("".join(held))
        held.clear()

    stop = threading.Event()
    text = "".join(log_lines(open(path, "rb"), -1, True, lambda: True, lambda: True, stop, refresh))
    assert text == "first\nlast words\n"
