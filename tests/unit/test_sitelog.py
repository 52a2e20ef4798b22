"""LogSink: site logs written in batches, and a site's job log shipped to the server in order,
kept for a retry when the server is away, let go of a while after the job ended."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.client.sitelog import MAX_UNSHIPPED, LogSink
from runtime.transport import TransportError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sink():
    s = LogSink(interval=3600, clock=Clock())  # the test flushes by hand
    yield s
    s.close()


def test_what_is_written_to_a_shipped_file_is_sent_in_order_after_it_is_on_disk(sink, tmp_path):
    log, other = tmp_path / "job" / "log.txt", tmp_path / "other.txt"
    sent: list[tuple[str, bool]] = []
    sink.ship(log, lambda text: sent.append((text, log.is_file() and text in log.read_text())))
    sink.write(log, "a\n")
    sink.write(other, "not shipped\n")
    sink.write(log, "b\n")
    assert sent == []  # batched: nothing before a flush
    sink.flush()
    sink.write(log, "c\n")
    sink.flush()
    assert sent == [("a\nb\n", True), ("c\n", True)]
    assert log.read_text() == "a\nb\nc\n" and other.read_text() == "not shipped\n"


def test_text_the_server_did_not_take_goes_with_the_next_batch(sink, tmp_path):
    log = tmp_path / "log.txt"
    sent, down = [], [True]

    def send(text: str) -> None:
        if down[0]:
            raise TransportError("server unreachable", retryable=True)
        sent.append(text)

    sink.ship(log, send)
    sink.write(log, "one\n")
    sink.flush()
    sink.write(log, "two\n")
    down[0] = False
    sink.flush()
    assert sent == ["one\ntwo\n"]


def test_a_long_outage_keeps_the_newest_text_within_its_bound(sink, tmp_path):
    log = tmp_path / "log.txt"
    sent = []
    sink.ship(log, lambda text: (_ for _ in ()).throw(TransportError("down")))
    sink.write(log, "x" * MAX_UNSHIPPED + "tail\n")
    sink.flush()
    sink.ship(log, sent.append)  # a new sender (e.g. the server is back): the kept text goes
    sink.flush()
    assert len(sent) == 1 and len(sent[0]) == MAX_UNSHIPPED and sent[0].endswith("tail\n")


def test_flush_one_writes_and_ships_that_file_alone(sink, tmp_path):
    log, other = tmp_path / "log.txt", tmp_path / "other.txt"
    sent = []
    sink.ship(log, sent.append)
    sink.write(log, "result soon\n")
    sink.write(other, "later\n")
    sink.flush_one(log)
    assert sent == ["result soon\n"] and log.read_text() == "result soon\n"
    assert not other.exists()


def test_unship_after_a_grace_keeps_shipping_until_then(sink, tmp_path):
    log = tmp_path / "log.txt"
    sent = []
    sink.ship(log, sent.append)
    sink.unship(log, after=10)
    sink.write(log, "a script still printing\n")
    sink._clock.now += 5
    sink.tick()
    assert sent == ["a script still printing\n"]
    sink._clock.now += 6
    sink.tick()  # time is up: let go
    sink.write(log, "after\n")
    sink.tick()
    assert sent == ["a script still printing\n"] and log.read_text().endswith("after\n")


def test_unship_at_once_sends_what_is_pending_first(sink, tmp_path):
    log = tmp_path / "log.txt"
    sent = []
    sink.ship(log, sent.append)
    sink.write(log, "last words\n")
    sink.unship(log)
    sink.write(log, "unsent\n")
    sink.flush()
    assert sent == ["last words\n"]


def test_ship_now_sends_without_waiting_for_the_file(sink, tmp_path):
    log = tmp_path / "log.txt"
    sent = []
    sink.ship(log, sent.append)
    sink.write(log, "the part ended\n")
    sink.ship_now(log)
    assert sent == ["the part ended\n"] and not log.exists()  # the file comes with the batch
    sink.flush()
    assert log.read_text() == "the part ended\n" and sent == ["the part ended\n"]
