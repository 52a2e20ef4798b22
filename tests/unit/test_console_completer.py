"""The console's completer with no terminal: get_completions(Document, CompleteEvent) on the real
command registry and a ConsoleCache filled by hand; and the cache's notices and toolbar."""

from __future__ import annotations

import argparse

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from flshell.console.cache import ConsoleCache, Notice
from flshell.console.commands import REGISTRY
from flshell.console.completer import ConsoleCompleter, classify, split_words
from flshell.console.toolbar import toolbar_text
from runtime.admin import Event

RUNNING = "3f2a1b2c-1111-4000-8000-000000000001"
DONE = "3f2a9999-2222-4000-8000-000000000002"
OTHER = "a0b1c2d3-3333-4000-8000-000000000003"


def _job(job_id: str, name: str, status: str, submitted_at: float, **extra) -> dict:
    return {"job_id": job_id, "short_id": job_id[:8], "name": name, "status": status,
            "submitted_at": submitted_at, **extra}


@pytest.fixture
def cache() -> ConsoleCache:
    c = ConsoleCache()
    c.load([_job(OTHER, "cifar10", "WAITING", 3.0, reason="waiting for sites: 1 of 2"),
            _job(DONE, "hello-numpy", "COMPLETED", 2.0),
            _job(RUNNING, "hello-numpy", "RUNNING", 1.0, current_round=1, total_rounds=5)],
           [{"name": "site-2", "status": "LOST"}, {"name": "site-1", "status": "CONNECTED"},
            {"name": "hospital a", "status": "CONNECTED"}])
    c.mark_connected("127.0.0.1:8003")
    return c


@pytest.fixture
def complete(cache):
    completer = ConsoleCompleter(REGISTRY, cache, last_job=lambda: DONE)

    def run(text: str, cursor: int | None = None) -> list:
        doc = Document(text, len(text) if cursor is None else cursor)
        return list(completer.get_completions(doc, CompleteEvent(completion_requested=True)))
    return run


def texts(completions) -> list[str]:
    return [c.text for c in completions]


def test_command_names_with_help_at_the_start(complete):
    got = complete("")
    assert {"submit_job", "list_jobs", "abort_job", "watch", "exit", "bye", "help"} <= set(texts(got))
    submit = next(c for c in got if c.text == "submit_job")
    assert submit.display_meta_text == " ".join(REGISTRY["submit_job"].help.split())
    ab = complete("ab")
    assert texts(ab) == ["abort_job"] and ab[0].start_position == -2
    # a prefix comes first, then names that merely contain the word
    jobs = texts(complete("job"))
    assert "list_jobs" in jobs and "abort_job" in jobs and all("job" in t for t in jobs)
    assert texts(complete("li"))[0] == "list_jobs"
    # after `;` a new command starts
    assert texts(complete("list_jobs; ab")) == ["abort_job"]
    # an unknown command, or a comment: nothing to offer
    assert complete("frobnicate ") == [] and complete("# abort_job ") == []


def test_job_ids_by_prefix_with_name_and_status(complete):
    got = complete("abort_job 3f2a")
    assert texts(got) == ["3f2a1b2c", "3f2a9999"]  # the active job first
    assert got[0].display_text == "3f2a1b2c  hello-numpy  RUNNING"
    assert got[0].display_meta_text == "round 2/5"
    assert got[0].start_position == -4
    # every job when nothing is typed: `last`, then running, waiting, finished (newest first in each)
    assert texts(complete("show_job ")) == ["last", "3f2a1b2c", "a0b1c2d3", "3f2a9999"]
    assert complete("show_job ")[2].display_meta_text == "waiting for sites: 1 of 2"
    # case-insensitive, and a job name finds its id
    assert texts(complete("watch 3F2A1")) == ["3f2a1b2c"]
    assert texts(complete("wait_job cif")) == ["a0b1c2d3"]
    # an option before the job, and a job in the second positional slot's command
    assert texts(complete("abort_job -y a0")) == ["a0b1c2d3"]
    assert complete("abort_job zz") == []


def test_job_id_inserted_is_a_unique_prefix(cache, complete):
    twin = "3f2a1b2c-ffff-4000-8000-000000000009"  # same first 8 characters as RUNNING
    cache.load(cache.jobs() + [_job(twin, "twin", "SUBMITTED", 4.0)], cache.sites())
    assert set(texts(complete("abort_job 3f2a1b"))) == {"3f2a1b2c-1", "3f2a1b2c-f"}


def test_site_names(complete):
    assert texts(complete("tail_log 3f2a1b2c site")) == ["site-1", "site-2"]
    got = complete("tail_log 3f2a1b2c site-2")
    assert got[0].display_meta_text == "LOST"
    assert texts(complete("gpu h")) == ['"hospital a"']  # quoted, as the runner's shlex reads it
    # check_status: the choice first, then any number of sites
    assert texts(complete("check_status ")) == ["server", "client"]
    assert texts(complete("check_status client site-1 s")) == ["site-1", "site-2"]


def test_choices_and_options(complete):
    assert texts(complete("list_jobs -s ")) == ["SUBMITTED", "WAITING", "RUNNING", "COMPLETED", "FAILED",
                                               "ABORTED"]
    assert texts(complete("list_jobs --status C")) == ["COMPLETED"]
    assert texts(complete("set format j")) == ["json"]
    options = complete("list_jobs -")
    assert texts(options) == ["--all", "--active", "--name", "--status", "--max"]
    assert options[0].display_text == "-a, --all" and "finished" in options[0].display_meta_text
    assert texts(complete("list_jobs --a")) == ["--all", "--active"]
    assert "--all" not in texts(complete("list_jobs -a -"))  # already given
    # nothing positional left: an empty word offers the options
    assert "--max" in texts(complete("list_jobs "))
    assert texts(complete("abort_job 3f2a1b2c -")) == ["--yes"]
    assert texts(complete("help abo")) == ["abort_job"]  # command names as an argument


def test_paths(tmp_path, complete, monkeypatch):
    (tmp_path / "jobs" / "hello-numpy").mkdir(parents=True)
    (tmp_path / "jobs" / "hello-pt").mkdir()
    (tmp_path / "jobs" / "notes.txt").write_text("x")
    (tmp_path / "my jobs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert texts(complete("submit_job jo")) == ["jobs/"]  # a folder ends in /: Tab again goes in
    assert texts(complete("submit_job jobs/hello")) == ["jobs/hello-numpy/", "jobs/hello-pt/"]
    got = complete("submit_job jobs/hello-n")
    assert texts(got) == ["jobs/hello-numpy/"] and got[0].start_position == -len("jobs/hello-n")
    assert texts(complete(f"source {tmp_path}/jobs/no")) == [f"{tmp_path}/jobs/notes.txt"]
    assert texts(complete("submit_job my")) == ['"my jobs/"']  # quoted for the runner's shlex
    assert texts(complete('submit_job "my j')) == ['"my jobs/"']
    monkeypatch.setenv("HOME", str(tmp_path))
    assert texts(complete("submit_job ~/jobs/hello-p")) == ["~/jobs/hello-pt/"]
    assert texts(complete("download_job 3f2a1b2c jobs/hello-p")) == ["jobs/hello-pt/"]


def test_split_words_and_classify():
    words = split_words('submit_job "my jobs/he')
    assert words.before == ["submit_job"] and words.current == "my jobs/he" and words.quote == '"'
    assert words.start == len("submit_job ")
    assert split_words("a b\\ c d").before == ["a", "b c"]
    assert split_words("list_jobs; abort_job 3f").before == ["abort_job"]
    ctx = classify(split_words("list_jobs -m "), REGISTRY)
    assert ctx.kind == "value" and ctx.action.dest == "limit"
    ctx = classify(split_words("list_jobs -m=3 "), REGISTRY)
    assert ctx.kind == "option"
    # an argument taking a fixed number of values
    parser = argparse.ArgumentParser(prog="pair", add_help=False)
    parser.add_argument("two", nargs=2)
    parser.add_argument("rest")
    cmd = argparse.Namespace(parser=parser, completions={}, help="")
    assert classify(split_words("pair a "), {"pair": cmd}).action.dest == "two"
    assert classify(split_words("pair a b "), {"pair": cmd}).action.dest == "rest"


def _event(type: str, **data) -> Event:
    return Event(seq=1, ts=0.0, type=type, data=data)


def test_cache_notices_are_told_once_whichever_source_sees_them_first(cache):
    since = cache.generation()
    listing = cache.jobs()  # fetched before the event below, applied after it
    notices = cache.apply_event(_event("job_status", job_id=RUNNING, name="hello-numpy", status="COMPLETED"))
    assert notices == [Notice("job", RUNNING, "COMPLETED", "RUNNING", name="hello-numpy")]
    assert cache.load(listing, cache.sites(), since) == []  # the stale listing neither reverts nor repeats
    assert {j["job_id"]: j["status"] for j in cache.jobs()}[RUNNING] == "COMPLETED"
    assert cache.load(cache.jobs(), cache.sites(), cache.generation()) == []
    # a change only a listing saw (events missed while reconnecting) is told by the listing
    jobs = [dict(j, status="FAILED", reason="site-1 crashed") if j["job_id"] == OTHER else j for j in cache.jobs()]
    assert cache.load(jobs, cache.sites(), cache.generation()) == [
        Notice("job", OTHER, "FAILED", "WAITING", name="cifar10", detail="site-1 crashed")]
    # sites: lost, back; STALE and back is not news
    assert cache.apply_event(_event("site_status", site="site-1", status="LOST")) == [
        Notice("site", "site-1", "LOST", "CONNECTED")]
    assert cache.apply_event(_event("site_status", site="site-1", status="CONNECTED")) == [
        Notice("site", "site-1", "CONNECTED", "LOST")]
    assert cache.apply_event(_event("site_status", site="site-1", status="STALE")) == []
    assert cache.apply_event(_event("site_status", site="site-1", status="CONNECTED")) == []
    assert cache.apply_event(_event("site_status", site="site-9", status="CONNECTED")) == [
        Notice("site", "site-9", "CONNECTED", None)]
    # a deleted job goes, and a listing fetched before the delete does not bring it back
    since, listing = cache.generation(), cache.jobs()
    assert cache.apply_event(_event("job_deleted", job_id=DONE, name="hello-numpy")) == []
    cache.load(listing, cache.sites(), since)
    assert DONE not in {j["job_id"] for j in cache.jobs()}


def test_cache_connection_state_and_toolbar(cache):
    def plain(fragments) -> str:
        return "".join(text for _, text in fragments)

    assert plain(toolbar_text(cache, "127.0.0.1:8003")) == \
        " ● connected 127.0.0.1:8003 │ sites 2/3 │ jobs 1 running, 1 waiting"
    assert cache.mark_unreachable("127.0.0.1:8003", "connection refused") == [
        Notice("connection", "127.0.0.1:8003", "reconnecting", "connected", detail="connection refused")]
    assert cache.mark_unreachable("127.0.0.1:8003", "connection refused") == []  # told once
    assert cache.mark_unreachable("127.0.0.1:8003", "connection refused") == []
    text = plain(toolbar_text(cache, "127.0.0.1:8003", "json"))
    assert text.startswith(" ● reconnecting (3) 127.0.0.1:8003") and "format json" in text
    assert "stale data" in text
    assert cache.mark_connected("127.0.0.1:8003") == [Notice("connection", "127.0.0.1:8003", "connected",
                                                             "reconnecting")]
    assert cache.summary().retries == 0


def test_first_listing_tells_nothing():
    c = ConsoleCache()
    assert c.apply_event(_event("job_status", job_id=DONE, status="COMPLETED")) == []
    assert c.load([_job(RUNNING, "x", "FAILED", 1.0)], [{"name": "s", "status": "LOST"}]) == []
    assert c.summary().state == "connecting"
    # an empty cache offers no job ids (the completer never asks the server)
    completer = ConsoleCompleter(REGISTRY, ConsoleCache())
    assert list(completer.get_completions(Document("abort_job "), CompleteEvent())) == []


def test_the_toolbar_counts_connected_sites_of_those_known_and_says_how_many_are_late():
    def plain(fragments) -> str:
        return "".join(text for _, text in fragments)

    c = ConsoleCache()
    c.load([], [{"name": "site-1", "status": "CONNECTED"}, {"name": "site-2", "status": "CONNECTED"}])
    c.mark_connected("127.0.0.1:8003")
    assert "│ sites 2/2 │" in plain(toolbar_text(c, "127.0.0.1:8003"))
    c.apply_event(_event("site_status", site="site-1", status="STALE"))  # stopped: missed heartbeats
    assert "│ sites 1/2 (1 stale) │" in plain(toolbar_text(c, "127.0.0.1:8003"))
    c.apply_event(_event("site_status", site="site-1", status="DISCONNECTED"))  # said goodbye
    assert "│ sites 1/2 │" in plain(toolbar_text(c, "127.0.0.1:8003"))
    c.apply_event(_event("site_status", site="site-1", status="CONNECTED"))  # restarted, registered again
    assert "│ sites 2/2 │" in plain(toolbar_text(c, "127.0.0.1:8003"))
