"""The console's command registry, parsing, confirmation, output formats and scripts, against
a fake Session (no server, no network): flshell.console.{commands,script,render}."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flshell.console import render
from flshell.console.commands import REGISTRY, commands
from flshell.console.live import WATCH_TYPES
from flshell.console.script import Runner, parse_script, split_line
from flshell.exit_codes import CONNECTION, INTERRUPTED, JOB_FAILED, JOB_UNSUCCESSFUL, OK, USAGE
from runtime.admin import AmbiguousJob, Event, ServerUnreachable, UnknownJob

JOB_ID = "3f2a1b2c-0000-4000-8000-000000000001"
DONE_ID = "77aa0000-0000-4000-8000-000000000002"


def _job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "short_id": job_id[:8], "name": "hello-numpy", "status": status, "reason": None,
            "submitter": "admin", "submitted_at": 1.7e9, "started_at": 1.7e9 + 1, "ended_at": None,
            "current_round": 1, "total_rounds": 3, "sites": ["site-1", "site-2"], "min_clients": 2, **extra}


ROUNDS = [
    {"round": 0, "total_rounds": 2, "seconds": 1.25, "sites_ok": ["site-1", "site-2"], "sites_failed": [],
     "sites_timed_out": [], "metrics": {"loss": 0.5, "acc": 0.7}},
    {"round": 1, "total_rounds": 2, "seconds": 0.75, "sites_ok": ["site-1"], "sites_failed": ["site-2"],
     "sites_timed_out": [], "metrics": {"loss": 0.25, "acc": 0.9}},
]
SITES = [
    {"name": "site-1", "status": "CONNECTED", "heartbeat_age": 0.4, "queued": 0,
     "info": {"jobs": [JOB_ID], "job_pids": {JOB_ID: 4242},
              "host": {"cpu_percent": 12.5, "mem_used": 2 * 1024**3, "mem_total": 8 * 1024**3},
              "gpus": [{"index": 0, "name": "NVIDIA H100", "util_percent": 71, "mem_used": 40 * 1024**3,
                        "mem_total": 80 * 1024**3, "temperature_c": 63, "power_w": 212.0,
                        "processes": [{"pid": 4242, "job_id": None, "mem_used": 1024}]}]}},
    {"name": "site-2", "status": "STALE", "heartbeat_age": 31.0, "queued": 1,
     "info": {"jobs": [], "host": {"cpu_percent": 3.0, "mem_used": 1024**3, "mem_total": 4 * 1024**3},
              "gpus": [], "gpu_note": "no NVML: ModuleNotFoundError: No module named 'pynvml'"}},
]
# Session.gpu_history's answer: site-1's GPU 0 went from idle to full, one sample had no reading
GPU_HISTORY = {"site-1": {0: {"t": [1.7e9 + 5 * i for i in range(10)],
                              "util": [0, 0, 12.5, 25, 50, None, 75, 87.5, 100, 71],
                              "mem_used": [1024 * i for i in range(10)]}}}


class FakeStream:
    """An EventStream that hands out `events`, then blocks until closed."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.closed = threading.Event()

    def __iter__(self):
        return self

    def __next__(self) -> Event:
        if self.events and not self.closed.is_set():
            return self.events.pop(0)
        self.closed.wait()
        raise StopIteration

    def close(self) -> None:
        self.closed.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeSession:
    """Canned answers in the shapes runtime.admin.Session returns; records what was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.jobs = {JOB_ID: _job(JOB_ID, "RUNNING"),
                     DONE_ID: _job(DONE_ID, "COMPLETED", rounds=ROUNDS, current_round=1, total_rounds=2)}
        self.events: list[Event] = []
        self.streams: list[FakeStream] = []
        self.log_lines = ["one", "two"]  # what tail_log gives

    def _find(self, ref: str) -> dict[str, Any]:
        if ref == "unreachable":
            raise ServerUnreachable("server unreachable at 127.0.0.1:1: connection refused")
        if ref == "77":
            raise AmbiguousJob("77 matches 77aa0000 (hello-numpy), 77bb0000 (other)")
        found = [j for i, j in self.jobs.items() if i.startswith(ref)]
        if not found:
            raise UnknownJob(f"no job {ref}")
        return dict(found[0])

    def submit_job(self, folder):
        self.calls.append(("submit_job", str(folder)))
        return JOB_ID

    def list_jobs(self, name=None, status=None, limit=None, include_done=True):
        self.calls.append(("list_jobs", (name, status, limit, include_done)))
        return [dict(j) for j in self.jobs.values()][:limit]

    def get_job(self, ref):
        return self._find(ref)

    def abort_job(self, ref):
        self.calls.append(("abort_job", ref))
        return {**self._find(ref), "status": "ABORTED"}

    def delete_job(self, ref):
        self.calls.append(("delete_job", ref))
        return self._find(ref)

    def clone_job(self, ref):
        self._find(ref)
        return DONE_ID

    def download_job(self, ref, dest):
        return Path(dest) / self._find(ref)["job_id"]

    def list_sites(self):
        return [dict(s) for s in SITES]

    def gpu_history(self, site=None, last=None):
        self.calls.append(("gpu_history", site))
        return {name: gpus for name, gpus in GPU_HISTORY.items() if site in (None, name)}

    def system_info(self):
        return {"server": "host", "pid": 1, "started_at": 1.7e9, "uptime": 12.0, "workspace": "/tmp/ws",
                "running_jobs": [JOB_ID], "sites": {"CONNECTED": 1, "STALE": 1}, "host": SITES[0]["info"]["host"]}

    def tail_log(self, ref, site=None, lines=50, follow=False):
        self._find(ref)
        self.calls.append(("tail_log", (ref, site)))
        return iter(self.log_lines)

    def watch(self, since=None, types=None):
        self.calls.append(("watch", tuple(types or ())))
        stream = FakeStream(self.events)
        self.streams.append(stream)
        return stream


def _runner(session: Any = None, **kw: Any) -> tuple[Runner, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Runner(session if session is not None else FakeSession(), out, err, **kw), out, err


# ---- parsing ---------------------------------------------------------------------------------


def test_lines_split_on_semicolons_with_quotes_and_comments():
    assert split_line("submit_job 'my job';wait_job last --timeout 3  # then wait") == [
        ["submit_job", "my job"], ["wait_job", "last", "--timeout", "3"]]
    assert split_line("sites ; ;sys_info;;") == [["sites"], ["sys_info"]]
    assert split_line("show_job 'a;b'") == [["show_job", "a;b"]]
    assert split_line("  # nothing") == []
    steps = parse_script("sites\n\n# comment\nlist_jobs -m 2 -s running; bye")
    assert [(s.line, s.cmd.name) for s in steps] == [(1, "sites"), (4, "list_jobs"), (4, "exit")]
    assert steps[1].args.limit == 2 and steps[1].args.status == "RUNNING"


@pytest.mark.parametrize("text, message", [
    ("lsit_jobs", "unknown command 'lsit_jobs'; did you mean list_jobs?"),
    ("show", "did you mean show_job or show_stats?"),
    ("frobnicate", "unknown command 'frobnicate'; `help` lists the commands"),
    ("show_job", "show_job: the following arguments are required: ID (usage: show_job ID)"),
    ("show_job a b", "unrecognized arguments: b"),
    ("sites\nwait_job x --timeout soon", "line 2: wait_job: argument --timeout: expected seconds, got 'soon'"),
    ("list_jobs -m 0", "expected 1 or more"),
    ("list_jobs -s done", "expected one of SUBMITTED"),
    ("set format yaml", "invalid choice: 'yaml'"),
    ("tail_log x -n", "expected one argument"),
    ("show_job 'x", "No closing quotation"),
])
def test_usage_errors_are_exit_2_name_the_line_and_run_nothing(text, message):
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_script(f"submit_job x\n{text}" if "\n" not in text else text) == USAGE
    assert message in err.getvalue() and "(nothing ran)" in err.getvalue()
    assert out.getvalue() == "" and session.calls == []


def test_help_flag_shows_the_command_usage():
    r, out, err = _runner()
    assert r.run_line("wait_job -h") == OK
    assert "usage: wait_job [--timeout S] ID" in out.getvalue()


# ---- the registry ------------------------------------------------------------------------------

ISSUE_COMMANDS = {"help", "submit_job", "list_jobs", "show_job", "abort_job", "delete_job", "clone_job",
                  "download_job", "wait_job", "watch", "check_status", "sites", "gpu", "sys_info", "tail_log",
                  "show_stats", "shutdown", "restart", "remove_client", "set", "source", "bye", "exit", "quit"}
KINDS = {"job", "site", "path", "command"}


def test_the_registry_has_every_command_with_help_usage_and_completions():
    assert ISSUE_COMMANDS <= set(REGISTRY)
    assert REGISTRY["bye"] is REGISTRY["exit"] is REGISTRY["quit"]
    for cmd in commands():
        assert cmd.help and cmd.parser.prog == cmd.name, cmd.name
        assert render.usage(cmd).startswith(cmd.name)
        dests = {a.dest for a in cmd.parser._actions}
        for dest, kind in cmd.completions.items():
            assert dest in dests, (cmd.name, dest)
            assert kind in KINDS or (kind.startswith("choices:") and kind[8:]), (cmd.name, kind)
        for action in cmd.parser._actions:  # every positional ID / SITE / path has a completion source
            if not action.option_strings and action.metavar in ("ID", "SITE", "FOLDER", "FILE", "DEST"):
                assert action.dest in cmd.completions, (cmd.name, action.dest)
    destructive = {c.name for c in commands() if c.destructive}
    assert destructive == {"abort_job", "delete_job", "shutdown", "restart", "remove_client"}
    for name in destructive:
        assert REGISTRY[name].parser.parse_args(["-y", "server" if name in ("shutdown", "restart") else "x"]).yes


# ---- output --------------------------------------------------------------------------------

JSON_LINES = [
    ("help", list), ("help wait_job", dict), ("list_jobs", list), (f"show_job {JOB_ID[:4]}", dict),
    ("submit_job some/folder", dict), ("clone_job 77aa", dict), ("download_job 77aa /tmp/x", dict),
    (f"wait_job {DONE_ID[:8]}", dict), ("abort_job -y 3f2a", dict), ("delete_job -y 77aa", dict),
    ("check_status server", dict), ("check_status client site-2", list), ("sites", list), ("gpu", list),
    ("gpu site-2", list), ("sys_info", dict), ("sys_info site-1", dict), ("tail_log 3f2a site-1 -n 2", dict),
    ("show_stats 77aa", dict), ("watch 77aa", dict), ("set format json", dict),
    ("version", dict), ("expanded auto", dict), ("pager off", dict),
]


@pytest.mark.parametrize("line, kind", JSON_LINES)
def test_json_format_prints_exactly_one_document_per_command(line, kind):
    r, out, err = _runner(fmt="json")
    assert r.run_line(line) == OK, err.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert isinstance(json.loads(lines[0]), kind)


def test_json_documents_carry_the_data():
    r, out, err = _runner()
    assert r.run_line("set format json; submit_job f; show_stats 77aa; gpu site-1; wait_job 77aa") == OK
    submitted, stats, gpus, final = (json.loads(x) for x in out.getvalue().splitlines()[1:])
    assert submitted == {"job_id": JOB_ID}
    assert stats["summary"]["loss"] == {"first": 0.5, "last": 0.25, "min": 0.25, "max": 0.5, "rounds": 2}
    assert gpus[0]["gpus"][0]["jobs"] == [JOB_ID]  # the GPU process is the job's (by its pid)
    assert final["status"] == "COMPLETED"
    assert r.fmt == "json" and r.run_line("set format table") == OK and r.fmt == "table"


def test_tables_for_people_are_plain_and_whole_when_piped():
    r, out, err = _runner()
    assert r.run_line("list_jobs; show_job 77aa; sites; gpu; show_stats 77aa; check_status server") == OK
    text = out.getvalue()
    assert "\x1b[" not in text  # no colour codes in a pipe
    assert not [line for line in text.splitlines() if line != line.rstrip()]
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert any(row.startswith("3f2a1b2c hello-numpy RUNNING 2/3 admin 11-1") for row in rows)  # one row, whole
    assert DONE_ID in text  # show_job: the full id
    assert "site-1" in text and "12%" in text and "2.0 GiB / 8.0 GiB" in text and "31.0s ago" in text
    assert "NVIDIA H100" in text and "71%" in text and "63°C" in text and "212 W" in text
    assert "no GPU" in text  # site-2
    assert "1/2" in text and "2/2" in text and "site-2" in text  # the rounds table with the failed site
    assert "running jobs 1: 3f2a1b2c" in rows


def test_watch_lines_for_people_and_heartbeats_left_out():
    session = FakeSession()
    session.jobs[JOB_ID]["status"] = "RUNNING"
    session.events = [
        Event(1, 1.7e9, "round_started", {"job_id": JOB_ID, "round": 0, "total_rounds": 3, "sites": 2}),
        Event(2, 1.7e9, "task_assigned", {"job_id": JOB_ID, "site": "site-1", "task": "train"}),
        Event(3, 1.7e9, "task_result", {"job_id": JOB_ID, "site": "site-1", "task": "train", "ok": True,
                                         "seconds": 1.2}),
        Event(4, 1.7e9, "task_result", {"job_id": JOB_ID, "site": "site-2", "task": "train", "ok": False,
                                         "seconds": 0.3, "error": "ValueError: boom"}),
        Event(5, 1.7e9, "round_completed", {"job_id": JOB_ID, "round": 0, "total_rounds": 3, "seconds": 1.5,
                                             "sites_failed": ["site-2"], "metrics": {"loss": 0.5}}),
        Event(6, 1.7e9, "job_status", {"job_id": DONE_ID, "name": "other", "status": "RUNNING"}),
        Event(7, 1.7e9, "job_status", {"job_id": JOB_ID, "name": "hello-numpy", "status": "FAILED",
                                        "reason": "site-2 failed"}),
    ]
    r, out, err = _runner(session)
    assert r.run_line("watch 3f2a") == OK  # ends by itself: the job ended
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["round 1/3 started on 2 site(s)", "site-1 reported train in 1.20s",
                     "site-2 FAILED train after 0.30s: ValueError: boom",
                     "round 1/3 completed in 1.50s, failed: site-2: loss=0.5",
                     "job 3f2a1b2c (hello-numpy) FAILED: site-2 failed"]
    assert "watching job 3f2a1b2c (hello-numpy), now RUNNING" in err.getvalue()
    assert "heartbeat" not in session.calls[0][1] and set(session.calls[0][1]) == set(WATCH_TYPES)


def test_cancel_ends_a_watch_from_another_thread():
    session = FakeSession()
    r, out, err = _runner(session)
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(r.run_line("watch")))
    t.start()
    deadline = time.monotonic() + 5
    while not session.streams and time.monotonic() < deadline:
        time.sleep(0.01)
    r.cancel()
    t.join(5)
    assert not t.is_alive() and codes == [OK]


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("line, code, message", [
    ("show_job 9999", JOB_FAILED, "error: show_job: no job matches 9999; list_jobs shows the ids"),
    ("show_job 77", JOB_FAILED, "77 matches 77aa0000 (hello-numpy), 77bb0000 (other); give more characters"),
    ("show_job unreachable", CONNECTION, "server unreachable at 127.0.0.1:1"),
    ("wait_job 3f2a --timeout 0", JOB_FAILED, "is still RUNNING after 0 s"),
    ("gpu site-9", JOB_FAILED, "no site site-9 has registered with the server; `sites` lists"),
    ("show_job last", USAGE, "'last' names the job most recently submitted"),
    ("check_status server site-1", USAGE, "takes no site names"),
    ("list_jobs -a --active", USAGE, "contradict"),
    ("restart -y server site-1", USAGE, "restart server takes no site names"),
])
def test_failures_are_one_line_on_err_with_their_exit_code(line, code, message):
    r, out, err = _runner()
    assert r.run_line(line) == code
    assert message in err.getvalue() and len(err.getvalue().splitlines()) == 1


def test_wait_job_is_exit_4_when_the_job_did_not_complete():
    session = FakeSession()
    session.jobs[JOB_ID]["status"] = "ABORTED"
    r, out, err = _runner(session)
    assert r.run_line("wait_job 3f2a") == JOB_UNSUCCESSFUL
    assert out.getvalue().strip() == "job 3f2a1b2c (hello-numpy) ABORTED"


def test_a_bug_in_a_command_does_not_escape():
    r, out, err = _runner(session=object())
    assert r.run_line("sites") == JOB_FAILED and "internal error (AttributeError" in err.getvalue()


# ---- confirmation ------------------------------------------------------------------------------


def test_destructive_commands_are_refused_without_y_when_nothing_can_ask():
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_line("abort_job 3f2a") == USAGE
    assert "add -y (`abort_job -y ...`)" in err.getvalue()
    assert r.run_line("delete_job 77aa") == USAGE
    assert [c for c in session.calls if c[0] in ("abort_job", "delete_job")] == []
    assert r.run_line("abort_job -y 3f2a; delete_job --yes 77aa") == OK
    assert [c for c in session.calls if c[0] in ("abort_job", "delete_job")] == [("abort_job", "3f2a"),
                                                                                 ("delete_job", "77aa")]
    r, out, err = _runner(session, assume_yes=True)
    assert r.run_line("abort_job 3f2a") == OK


def test_confirmation_asks_about_the_job_and_respects_no():
    session = FakeSession()
    asked: list[str] = []
    answers = iter([False, True])
    r, out, err = _runner(session, confirm=lambda q: asked.append(q) or next(answers))
    assert r.run_line("abort_job 3f2a") == JOB_FAILED and "not confirmed; nothing was done" in err.getvalue()
    assert r.run_line("abort_job 3f2a") == OK
    assert asked == ["abort job 3f2a1b2c (hello-numpy), now RUNNING?"] * 2
    assert [c for c in session.calls if c[0] == "abort_job"] == [("abort_job", "3f2a")]
    assert r.run_line("abort_job 9999") == JOB_FAILED and len(asked) == 2  # no question about a missing job
    # operating the federation asks too, in its own words; "no" sends nothing
    assert r.run_line("shutdown server") == JOB_FAILED and asked[-1] == "shut down the server?"
    assert not [c for c in session.calls if c[0] == "operate"]


# ---- scripts ---------------------------------------------------------------------------------


def test_stop_at_the_first_failure_or_keep_going():
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_script("show_job 9999\nsubmit_job f") == JOB_FAILED
    assert "error: line 1: show_job: no job matches 9999" in err.getvalue() and "submit_job" not in str(session.calls)
    r, out, err = _runner(session)
    assert r.run_script("show_job 9999\nlsit_jobs\nsubmit_job f\nshow_job last", keep_going=True) == JOB_FAILED
    assert "line 2: unknown command 'lsit_jobs'" in err.getvalue()
    assert ("submit_job", "f") in session.calls and r.last == JOB_ID and JOB_ID in out.getvalue()


def test_exit_stops_a_script_and_is_requested():
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_script("submit_job f; bye; submit_job g") == OK
    assert r.exit_requested and [c for c in session.calls if c[0] == "submit_job"] == [("submit_job", "f")]


def test_source_nests_locates_errors_and_refuses_loops(tmp_path):
    inner = tmp_path / "inner.flsh"
    outer = tmp_path / "outer.flsh"
    inner.write_text("# inner\nshow_job last\nshow_job 9999\n")
    outer.write_text(f"submit_job f\nsource {inner}\nsites\n")
    r, out, err = _runner()
    assert r.run_line(f"source {outer}") == JOB_FAILED
    assert err.getvalue().strip() == f"error: {inner}:3: show_job: no job matches 9999; list_jobs shows the ids"
    assert "SITE" not in out.getvalue()  # the failure stopped the outer file too
    assert r.run_file(outer, keep_going=True) == JOB_FAILED and "SITE" in out.getvalue()

    loop = tmp_path / "loop.flsh"
    loop.write_text(f"help exit\nsource {outer}\n")
    outer.write_text(f"source {loop}\n")
    r, out, err = _runner()
    assert r.run_line(f"source {loop}") == USAGE
    assert "already being sourced (loop.flsh -> outer.flsh -> loop.flsh)" in err.getvalue()
    r, out, err = _runner()
    assert r.run_line(f"source {tmp_path / 'missing.flsh'}") == JOB_FAILED and "cannot read" in err.getvalue()


def test_a_lazy_session_is_made_only_when_a_command_needs_the_server():
    made: list[int] = []

    def connect() -> FakeSession:
        made.append(1)
        return FakeSession()

    r, out, err = _runner(connect)
    assert r.run_line("help; set format json; help exit") == OK and made == []
    assert r.run_line("sites; list_jobs") == OK and made == [1]


def test_cancel_stops_a_script_after_the_cancelled_command():
    session = FakeSession()
    r, out, err = _runner(session)
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(r.run_script("watch\nsubmit_job f")))
    t.start()
    deadline = time.monotonic() + 5
    while not session.streams and time.monotonic() < deadline:
        time.sleep(0.01)
    r.cancel()
    t.join(5)
    assert codes == [INTERRUPTED] and ("submit_job", "f") not in session.calls
    assert "the rest of the commands did not run" in err.getvalue()
    assert r.run_line("submit_job f") == OK  # the next command is not cancelled


def test_the_old_import_still_works():
    from flshell.commands import JOB_UNSUCCESSFUL as J, OK as O, run_script

    out, err = io.StringIO(), io.StringIO()
    assert (J, O) == (4, 0)
    assert run_script(FakeSession(), "submit_job f", out, err) == OK and out.getvalue().strip() == JOB_ID


# ---- gpu: load, history, hosts without GPUs ----------------------------------------------------


def test_gpu_table_shows_each_gpu_with_a_sparkline_of_its_history_and_why_a_site_has_none():
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_line("gpu") == OK, err.getvalue()
    rows = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert rows[0] == "SITE GPU NAME UTIL HISTORY MEMORY TEMP POWER JOBS"
    # idle, idle, 12.5, 25, 50, (no reading), 75, 87.5, 100, now 71 %: oldest left, on a 0-100 scale
    assert "site-1 0 NVIDIA H100 71% ▁▁▂▃▅ ▇██▆ 40.0 GiB / 80.0 GiB 63°C 212 W 3f2a1b2c" in rows
    assert "site-2 - no GPU (no NVML: ModuleNotFoundError: No module named 'pynvml')" in rows
    assert ("gpu_history", None) in session.calls


def test_gpu_json_carries_the_history_and_the_note():
    r, out, err = _runner(fmt="json")
    assert r.run_line("gpu") == OK, err.getvalue()
    site1, site2 = json.loads(out.getvalue())
    gpu = site1["gpus"][0]
    assert gpu["history"]["util"] == GPU_HISTORY["site-1"][0]["util"]
    assert gpu["history"]["t"] == GPU_HISTORY["site-1"][0]["t"] and len(gpu["history"]["mem_used"]) == 10
    assert gpu["jobs"] == [JOB_ID] and "note" not in site1
    assert site2 == {"site": "site-2", "status": "STALE", "gpus": [],
                     "note": "no NVML: ModuleNotFoundError: No module named 'pynvml'"}


def test_gpu_of_a_site_without_gpus_asks_for_no_history():
    session = FakeSession()
    r, out, err = _runner(session)
    assert r.run_line("gpu site-2") == OK, err.getvalue()
    assert not [c for c in session.calls if c[0] == "gpu_history"]
    assert "no GPU (no NVML" in out.getvalue()


def test_gpu_rows_for_a_site_that_said_nothing_yet_and_a_gpu_with_no_history():
    rows = render.gpu_rows([{"name": "new", "status": "CONNECTED", "info": {}},
                            {"name": "bare", "status": "CONNECTED", "info": {"gpus": []}},
                            {"name": "fresh", "status": "CONNECTED",
                             "info": {"gpus": [{"index": 3, "name": "A100", "util_percent": None}]}}],
                           history={})
    assert rows[0]["note"] == rows[1]["note"] == "no GPU"
    assert rows[2]["gpus"][0]["history"] == {"t": [], "util": [], "mem_used": []}
    out = io.StringIO()
    render.print_to(out, render.gpu_table(rows))
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert "new - no GPU" in lines and "bare - no GPU" in lines
    assert "fresh 3 A100 n/a - n/a n/a n/a -" in lines


def test_sparkline_scale_width_and_gaps():
    assert render.sparkline([0, 100, None, 50], width=10) == "▁█ ▅"
    assert render.sparkline(range(0, 100, 10), width=3) == "▆▇█"  # the latest `width` samples
    assert render.sparkline([], width=5) == ""


@pytest.mark.parametrize("info, shown", [
    ({"gpus": [{"index": 0}, {"index": 1}]}, "2"),
    ({"gpus": [], "gpu_inventory": [{"index": 0}, {"index": 1}], "gpu_alloc": {}}, "2"),
    ({"gpu_inventory": [{"index": 0}, {"index": 1}, {"index": 2}], "gpu_alloc": {"job-a": [0, 2]}},
     "3 (2 held)"),
    ({}, "0"),
])
def test_the_sites_gpus_column_counts_the_declared_gpus_and_those_held(info, shown):
    assert render.gpu_count(info) == shown


# ---- gpu: GPUs declared by hand (flshell client --gpus 0:16,1:16), no NVML ---------------------

DECLARED = {"name": "site-3", "status": "CONNECTED", "heartbeat_age": 1.0, "queued": 0,
            "info": {"jobs": [JOB_ID], "gpus": [],
                     "gpu_note": "no NVML: ModuleNotFoundError: No module named 'pynvml'",
                     "gpu_inventory": [{"index": 0, "mem_total": 16 * 1024**3},
                                       {"index": 1, "mem_total": 16 * 1024**3}],
                     "gpu_alloc": {JOB_ID: [1]}}}


def test_gpu_lists_gpus_declared_by_hand_with_their_memory_and_why_their_load_is_unknown():
    session = FakeSession()
    session.list_sites = lambda: [dict(DECLARED)]
    r, out, err = _runner(session)
    assert r.run_line("gpu; sites") == OK, err.getvalue()
    rows = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert "site-3 0 declared - - - / 16.0 GiB - - -" in rows
    assert "site-3 1 declared - - - / 16.0 GiB - - 3f2a1b2c" in rows  # the job holding GPU 1
    assert ("site-3 load unknown (GPUs declared; the site says: no NVML: ModuleNotFoundError: "
            "No module named 'pynvml')") in rows
    assert not [row for row in rows if "no GPU" in row]
    assert any(row.startswith("site-3 CONNECTED") and row.endswith(" 2 (1 held)") for row in rows)  # as `sites`

    r, out, err = _runner(session, fmt="json")
    assert r.run_line("gpu site-3") == OK, err.getvalue()
    (row,) = json.loads(out.getvalue())
    assert [(g["index"], g["declared"], g["mem_total"], g["util_percent"], g["jobs"]) for g in row["gpus"]] == [
        (0, True, 16 * 1024**3, None, []), (1, True, 16 * 1024**3, None, [JOB_ID])]
    assert row["load_note"].startswith("no NVML") and "note" not in row


def test_gpu_with_load_samples_and_declared_gpus_without_lists_both():
    site = {**DECLARED, "info": {**DECLARED["info"], "gpus": [dict(SITES[0]["info"]["gpus"][0], processes=[])]}}
    (row,) = render.gpu_rows([site])
    assert [(g["index"], bool(g.get("declared"))) for g in row["gpus"]] == [(0, False), (1, True)]


# ---- show_job: a site that failed every round of a job that still COMPLETED --------------------

FAILING_ROUNDS = [{"round": i, "total_rounds": 3, "seconds": 0.5, "sites_ok": ["site-1", "site-2"],
                   "sites_failed": ["site-3"] + (["site-2"] if i == 1 else []), "sites_timed_out": [],
                   "metrics": {}} for i in range(3)]


def test_show_job_names_a_site_that_failed_in_every_round_with_its_last_error():
    session = FakeSession()
    session.jobs[DONE_ID] = _job(DONE_ID, "COMPLETED", rounds=FAILING_ROUNDS, current_round=2, total_rounds=3)
    session.log_lines = [
        "2026-01-01 10:00:01 WARNING task 'train' failed on site-3: KeyError: 'weights'",
        "    Traceback (most recent call last):",
        "2026-01-01 10:00:03 WARNING task 'train' failed on site-3: ZeroDivisionError: division by zero",
        "2026-01-01 10:00:03 WARNING task 'train' failed on site-2: OSError: disk full"]
    r, out, err = _runner(session)
    assert r.run_line("show_job 77aa") == OK, err.getvalue()
    text = " ".join(out.getvalue().split())
    assert "site-3 failed in all 3 rounds: ZeroDivisionError: division by zero" in text
    assert "site-2 failed in all" not in text  # it failed once only
    r, out, err = _runner(session, fmt="json")
    assert r.run_line("show_job 77aa") == OK
    assert json.loads(out.getvalue())["sites_failing_every_round"] == [
        {"site": "site-3", "rounds": 3, "timed_out": 0, "error": "ZeroDivisionError: division by zero"}]


def test_show_job_asks_for_no_log_when_every_site_answered_in_some_round():
    session = FakeSession()  # DONE_ID: site-2 failed in round 2 of 2 only
    r, out, err = _runner(session)
    assert r.run_line("show_job 77aa") == OK
    assert "every_round" not in out.getvalue() and "failed in" not in out.getvalue()
    assert not [c for c in session.calls if c[0] == "tail_log"]


@pytest.mark.parametrize("rounds, line", [
    ([{"sites_failed": [], "sites_timed_out": ["s"]}], "s timed out in the only round"),
    ([{"sites_failed": {"s": "Traceback\n  ...\nValueError: bad"}, "sites_timed_out": []},
      {"sites_failed": [], "sites_timed_out": ["s"]}], "s failed in all 2 rounds (1 timed out): ValueError: bad"),
    ([{"metrics": {}}], None),  # rounds recorded without their outcome
])
def test_failing_every_round_wording(rounds, line):
    found = render.failing_every_round(rounds)
    assert [render.failing_line(f) for f in found] == ([line] if line else [])


# ---- shell: clear, version, expanded, pager ------------------------------------------------------


class Terminal(io.StringIO):
    """A StringIO that says it is a terminal (with no file descriptor: its size is $COLUMNS x $LINES)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def screen(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "12")


def test_clear_clears_a_terminal_and_leaves_a_pipe_alone():
    out = Terminal()
    r = Runner(FakeSession(), out, io.StringIO())
    assert r.run_line("clear") == OK and out.getvalue().startswith("\x1b[H\x1b[2J")
    cleared: list[bool] = []
    r.clear_screen = lambda: cleared.append(True)  # the REPL's own (prompt-toolkit's clear)
    assert r.run_line("clear") == OK and cleared == [True]
    r, out, err = _runner()
    assert r.run_line("clear") == OK and out.getvalue() == "" and err.getvalue() == ""


def test_version_is_the_installed_packages():
    from importlib.metadata import version

    r, out, err = _runner()
    assert r.run_line("version") == OK and out.getvalue() == f"flshell {version('flshell')}\n"
    r, out, err = _runner(fmt="json")
    assert r.run_line("version") == OK and json.loads(out.getvalue()) == {"flshell": version("flshell")}


def test_expanded_shows_one_field_per_line_on_off_or_when_a_table_is_too_wide():
    r, out, err = _runner()
    assert r.run_line("expanded on; sites") == OK, err.getvalue()
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert lines[0] == "expanded display on"
    assert lines[1:9] == ["-[ RECORD 1 ]", "SITE │ site-1", "STATUS │ CONNECTED", "HEARTBEAT │ 0.4s ago",
                          "JOBS │ 3f2a1b2c", "CPU │ 12%", "MEMORY │ 2.0 GiB / 8.0 GiB", "GPUS │ 1"]
    assert "-[ RECORD 2 ]" in lines and "SITE │ site-2" in lines
    # `x` (or psql's `\x`) toggles; auto: only what does not fit 80 columns
    r, out, err = _runner()
    assert r.run_line("x; x; sites") == OK and "RECORD" not in out.getvalue().split("expanded display off")[1]
    r, out, err = _runner()
    assert r.run_line("expanded auto; sites; gpu") == OK, err.getvalue()
    sites_part, gpu_part = out.getvalue().split("expanded display auto\n")[1].split("-[ RECORD 1 ]\n", 1)
    assert sites_part.split()[:3] == ["SITE", "STATUS", "HEARTBEAT"]  # it fits 80 columns: a table
    assert max(map(len, sites_part.splitlines())) <= 80
    gpu_lines = [" ".join(line.split()) for line in gpu_part.splitlines()]  # too wide: records
    assert gpu_lines[:4] == ["SITE │ site-1", "GPU │ 0", "NAME │ NVIDIA H100", "UTIL │ 71%"]
    assert "-[ RECORD 2 ]" in gpu_lines
    # show_job: its fields stay a list, its rounds table becomes records
    r, out, err = _runner()
    assert r.run_line("expanded on; show_job 77aa") == OK
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert "status COMPLETED" in lines
    assert lines[lines.index("-[ RECORD 2 ]"):][1:5] == ["ROUND │ 2/2", "SECONDS │ 0.75", "SITES OK │ site-1",
                                                        "FAILED │ site-2"]


def _pager_into(path: Path) -> list[str]:
    """A pager that copies what it is given into `path`."""
    import sys

    return [sys.executable, "-c", f"import sys; open({str(path)!r}, 'w').write(sys.stdin.read())"]


def _many_jobs(n: int) -> FakeSession:
    session = FakeSession()
    for i in range(n):
        job_id = f"{i:08x}-0000-4000-8000-000000000000"
        session.jobs[job_id] = _job(job_id, "COMPLETED")
    return session


def test_the_pager_shows_output_taller_than_the_terminal_and_only_at_a_terminal(screen, tmp_path):
    paged = tmp_path / "paged"
    out = Terminal()
    r = Runner(_many_jobs(20), out, io.StringIO(), interactive=True)
    r.pager_command = _pager_into(paged)
    assert r.run_line("list_jobs") == OK
    assert out.getvalue() == "" and paged.read_text().count("COMPLETED") == 21  # 12 lines: paged
    paged.unlink()
    assert r.run_line("sites") == OK and not paged.exists() and "site-1" in out.getvalue()  # it fits
    assert r.run_line("pager off; list_jobs") == OK and not paged.exists()
    assert out.getvalue().count("COMPLETED") == 21 and "pager off" in out.getvalue()
    assert r.run_line("pager; list_jobs") == OK and paged.exists()  # toggled back on

    for runner in (Runner(_many_jobs(20), Terminal(), io.StringIO()),  # a script: never paged
                   Runner(_many_jobs(20), io.StringIO(), io.StringIO(), interactive=True)):  # a pipe
        paged.unlink(missing_ok=True)
        runner.pager_command = _pager_into(paged)
        assert runner.run_line("list_jobs") == OK and not paged.exists()
        assert runner.out.getvalue().count("COMPLETED") == 21


def test_a_pager_that_cannot_start_prints_instead(screen):
    out = Terminal()
    r = Runner(_many_jobs(20), out, io.StringIO(), interactive=True)
    r.pager_command = ["/nonexistent/pager"]
    assert r.run_line("list_jobs") == OK and out.getvalue().count("COMPLETED") == 21


def test_the_pager_command_comes_from_the_environment():
    from flshell.console.pager import pager_command

    assert pager_command({"FLSHELL_PAGER": "most -s", "PAGER": "more"}) == ["most", "-s"]
    assert pager_command({"PAGER": "more"}) == ["more"]
    assert pager_command({"FLSHELL_PAGER": "", "PAGER": "more"}) is None  # empty: off


def test_show_job_tells_every_status_the_job_had_and_why():
    session = FakeSession()
    history = [{"status": "SUBMITTED", "reason": None, "at": 1.7e9},
               {"status": "WAITING", "reason": "waiting for sites: needs 2 sites, 1 connected", "at": 1.7e9 + 5},
               {"status": "WAITING", "reason": "deploying to 2 sites", "at": 1.7e9 + 65},
               {"status": "RUNNING", "reason": None, "at": 1.7e9 + 66},
               {"status": "ABORTED", "reason": "aborted by alice", "at": 1.7e9 + 90}]
    session.jobs[DONE_ID] = _job(DONE_ID, "ABORTED", transitions=history)
    r, out, err = _runner(session)
    assert r.run_line("show_job 77aa") == OK, err.getvalue()
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    start = lines.index("history")
    rows = [line for line in lines[start:] if line.split(" ")[-1:] and (
        "SUBMITTED" in line or "WAITING" in line or "RUNNING" in line or "ABORTED" in line)]
    assert [row.split(" ", 2)[1] for row in rows[:5]] == ["SUBMITTED", "WAITING", "WAITING", "RUNNING", "ABORTED"]
    assert rows[1].endswith("waiting for sites: needs 2 sites, 1 connected")
    assert rows[4].endswith("aborted by alice")


def test_show_job_shows_the_cross_site_matrix_and_the_global_evaluation():
    session = FakeSession()
    results = {"cross_site_val": {"site-2": {"site-1": {"acc": 0.5}, "site-2": {"acc": 0.9}},
                                  "global": {"site-1": {"acc": 0.8}, "site-2": {"acc": 0.7}}},
               "global_eval": {"site-1": {"acc": 0.8, "loss": 0.3}}}
    session.jobs[DONE_ID] = _job(DONE_ID, "COMPLETED", results=results)
    r, out, err = _runner(session)
    assert r.run_line("show_job 77aa") == OK, err.getvalue()
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    start = lines.index("cross-site acc")
    assert lines[start + 1] == "MODEL site-1 site-2"
    assert lines[start + 3:start + 5] == ["global 0.8 0.7", "site-2 0.5 0.9"]  # the global row first
    start = lines.index("global model evaluation")
    assert lines[start + 1] == "SITE ACC LOSS" and lines[start + 3] == "site-1 0.8 0.3"
