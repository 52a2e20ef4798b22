"""The console's one output layer: rich tables and lines for people, JSON-ready data for scripts.

Everything here is pure: functions turn what `runtime.admin.Session` returns into rich
renderables or strings. Colour only reaches a terminal (rich turns it off for pipes and honours
NO_COLOR); piped output is never wrapped, so ids and paths stay whole for grep and awk.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any, Iterable, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "COMPLETED": "green", "FAILED": "bold red", "ABORTED": "yellow", "RUNNING": "cyan",
    "WAITING": "magenta", "SUBMITTED": "dim",
    "CONNECTED": "green", "STALE": "yellow", "LOST": "bold red", "DISCONNECTED": "dim",
}
PIPE_WIDTH = 10_000  # piped output: wide enough that rich never wraps a row


def is_terminal(out: TextIO) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def print_to(out: TextIO, renderable: RenderableType) -> None:
    """Render on `out`: the terminal's width and colours on a terminal; plain, unwrapped and
    without trailing blanks otherwise (a file, a pipe, a StringIO)."""
    if is_terminal(out):
        Console(file=out, highlight=False, emoji=False).print(renderable)
        out.flush()
        return
    buffer = io.StringIO()
    Console(file=buffer, width=PIPE_WIDTH, color_system=None, highlight=False, emoji=False,
            soft_wrap=True).print(renderable)
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
    out.flush()


def terminal_text(renderable: RenderableType, out: TextIO) -> str:
    """What print_to would show on the terminal `out`, as text (with its colour codes): for
    the pager."""
    buffer = io.StringIO()
    width = Console(file=out).width  # the terminal's
    Console(file=buffer, width=width, force_terminal=True, highlight=False, emoji=False).print(renderable)
    return buffer.getvalue()


def screen_width(out: TextIO) -> int:
    """The width tables must fit in for `expanded auto`: the terminal's, else 80 columns."""
    return Console(file=out).width if is_terminal(out) else 80


def to_json(doc: Any) -> str:
    """One JSON document on one line (JSON lines): what `set format json` prints per command."""
    return json.dumps(doc, default=str, separators=(",", ":"))


# ---- small values --------------------------------------------------------------------------


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def when_short(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts or time.time()))


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds / 3600:.0f}h{seconds % 3600 / 60:02.0f}m"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def status_text(status: Any) -> Text:
    text = str(status or "-")
    return Text(text, style=STATUS_STYLES.get(text, ""))


def short(job_id: Any) -> str:
    return str(job_id or "")[:8]


def job_label(job: dict[str, Any]) -> str:
    """`job 3f2a1b2c (hello-numpy)`: how messages name a job."""
    return f"job {job.get('short_id') or short(job.get('job_id'))} ({job.get('name')})"


def round_progress(job: dict[str, Any]) -> str:
    """`3/5` while round 3 of 5 runs (rounds count from 1 for people; from 0 on the wire)."""
    current, total = job.get("current_round"), job.get("total_rounds")
    done = "-" if current is None else str(current + 1)
    return f"{done}/{total}" if total else done


def status_line(job: dict[str, Any]) -> str:
    reason = job.get("reason")
    return f"{job_label(job)} {job.get('status')}" + (f": {reason}" if reason else "")


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=title, title_justify="left",
                  header_style="bold")
    for name in columns:
        # ids, names and statuses never wrap; free text (reasons, metrics) wraps when it must
        free = name in ("NAME", "REASON", "JOBS", "VALUE", "HELP", "DETAIL")
        table.add_column(name, no_wrap=not free, overflow="fold", min_width=10 if free else None)
    return table


# ---- jobs ----------------------------------------------------------------------------------


def jobs_table(jobs: list[dict[str, Any]]) -> RenderableType:
    if not jobs:
        return Text("no jobs")
    reasons = any(j.get("reason") for j in jobs)
    table = _table("ID", "NAME", "STATUS", "ROUND", "BY", "SUBMITTED", *(["REASON"] if reasons else []))
    for j in jobs:
        table.add_row(j.get("short_id") or short(j.get("job_id")), str(j.get("name")), status_text(j.get("status")),
                      round_progress(j), str(j.get("submitter") or "-"), when_short(j.get("submitted_at")),
                      *([j.get("reason") or ""] if reasons else []))
    return table


def job_detail(job: dict[str, Any]) -> RenderableType:
    """show_job: the job's fields, its rounds with their metrics, and what failed where."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    fields: list[tuple[str, Any]] = [
        ("job", job.get("job_id")), ("name", job.get("name")), ("status", status_text(job.get("status"))),
        ("reason", job.get("reason") or "-"), ("submitter", job.get("submitter") or "-"),
        ("submitted", when(job.get("submitted_at"))), ("started", when(job.get("started_at"))),
        ("ended", when(job.get("ended_at"))), ("round", round_progress(job)),
        ("min sites", job.get("min_clients") if job.get("min_clients") is not None else "-"),
        ("sites", ", ".join(job.get("sites") or []) or "-"),
    ]
    if job.get("failed_sites"):
        fields.append(("failed sites", ", ".join(map(str, job["failed_sites"]))))
    for key, val in fields:
        grid.add_row(key, val if isinstance(val, Text) else str(val))
    parts: list[RenderableType] = [grid]
    for entry in job.get("sites_failing_every_round") or []:
        parts.append(Text(failing_line(entry), style="yellow"))
    transitions = job.get("transitions") or []
    if len(transitions) > 1:
        parts += [Text(""), history_table(transitions)]
    rounds = job.get("rounds") or []
    if rounds:
        parts += [Text(""), rounds_table(rounds)]
    for table in evaluation_tables(job.get("results") or {}):
        parts += [Text(""), table]
    details = job.get("failure_details") or {}
    if details:
        failure = _table("WHERE", "DETAIL", title="failure")
        for where, detail in (details.items() if isinstance(details, dict) else [("-", details)]):
            failure.add_row(str(where), value(detail))
        parts += [Text(""), failure]
    return Group(*parts)


def _round_errors(rnd: dict[str, Any]) -> dict[str, Any]:
    """site -> error text a round record carries, if it carries any (`errors`, or a
    `sites_failed` that maps sites to errors)."""
    errors = dict(rnd.get("errors") or {}) if isinstance(rnd.get("errors"), dict) else {}
    if isinstance(rnd.get("sites_failed"), dict):
        errors = {**rnd["sites_failed"], **errors}
    return errors


def failing_every_round(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sites that failed (or timed out) in every recorded round: [{"site", "rounds", "timed_out",
    "error"}], `error` the last line of the latest error a round record names (else None).
    A job can COMPLETE without them (min_clients); nothing else would say they never worked."""
    if not rounds or not all("sites_failed" in r or "sites_timed_out" in r for r in rounds):
        return []  # rounds recorded without their outcome say nothing about sites
    always: set[str] | None = None
    for rnd in rounds:
        bad = set(rnd.get("sites_failed") or []) | set(rnd.get("sites_timed_out") or [])
        always = bad if always is None else always & bad
    out = []
    for site in sorted(always or ()):
        timed_out = sum(site in (r.get("sites_timed_out") or []) for r in rounds)
        errors = [e for e in (_round_errors(r).get(site) for r in rounds) if e]
        out.append({"site": site, "rounds": len(rounds), "timed_out": timed_out,
                    "error": last_line(str(errors[-1])) if errors else None})
    return out


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text.strip()


def failing_line(entry: dict[str, Any]) -> str:
    """`site-3 failed in all 5 rounds: ZeroDivisionError: division by zero`."""
    n, timed_out = entry.get("rounds", 0), entry.get("timed_out", 0)
    verb = "timed out" if timed_out == n else "failed"
    text = f"{entry.get('site')} {verb} in " + ("the only round" if n == 1 else f"all {n} rounds")
    if 0 < timed_out < n:
        text += f" ({timed_out} timed out)"
    return text + (f": {entry['error']}" if entry.get("error") else "")


def metric_names(rounds: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for rnd in rounds:
        for key in (rnd.get("metrics") or {}):
            if key not in names:
                names.append(key)
    return names


def evaluation_tables(results: dict[str, Any]) -> list[RenderableType]:
    """The cross-site matrix (models as rows, the sites that evaluated them as columns), one
    table per metric, and the global model's evaluation per site."""
    out: list[RenderableType] = []
    matrix = results.get("cross_site_val") or {}
    if isinstance(matrix, dict) and matrix:
        sites = sorted({s for row in matrix.values() if isinstance(row, dict) for s in row})
        metrics = sorted({m for row in matrix.values() if isinstance(row, dict)
                          for cell in row.values() if isinstance(cell, dict) for m in cell})
        for metric in metrics:
            table = _table("MODEL", *sites, title=f"cross-site {metric}")
            for owner in sorted(matrix, key=lambda o: (o != "global", o)):
                row = matrix[owner] if isinstance(matrix[owner], dict) else {}
                table.add_row(owner, *[value((row.get(s) or {}).get(metric, "-"))
                                       if isinstance(row.get(s), dict) else "-" for s in sites])
            out.append(table)
    evaluation = results.get("global_eval") or {}
    if isinstance(evaluation, dict) and evaluation:
        metrics = sorted({m for cell in evaluation.values() if isinstance(cell, dict) for m in cell})
        table = _table("SITE", *[m.upper() for m in metrics], title="global model evaluation")
        for site in sorted(evaluation):
            cell = evaluation[site] if isinstance(evaluation[site], dict) else {}
            table.add_row(site, *[value(cell.get(m, "-")) for m in metrics])
        out.append(table)
    return out


def history_table(transitions: list[dict[str, Any]]) -> Table:
    """Every status the job had, when, and why (what it waited for, who aborted it)."""
    table = _table("AT", "STATUS", "REASON", title="history")
    for t in transitions:
        table.add_row(clock(t["at"]) if t.get("at") else "-", status_text(t.get("status")),
                      t.get("reason") or "")
    return table


def rounds_table(rounds: list[dict[str, Any]]) -> Table:
    """One row per completed round: when (or how long), which sites answered when the server
    recorded it, and every metric as a column."""
    names = metric_names(rounds)
    has = {key: any(key in r for r in rounds) for key in ("recorded_at", "seconds", "sites_ok")}
    columns = ["ROUND"] + (["RECORDED"] if has["recorded_at"] else []) + (["SECONDS"] if has["seconds"] else [])
    columns += ["SITES OK", "FAILED"] if has["sites_ok"] else []
    table = _table(*columns, *[n.upper() for n in names], title="rounds")
    for rnd in rounds:
        metrics = rnd.get("metrics") or {}
        total = rnd.get("total_rounds")
        row = [f"{rnd.get('round', 0) + 1}/{total}" if total else str(rnd.get("round", 0) + 1)]
        if has["recorded_at"]:
            row.append(clock(rnd["recorded_at"]) if rnd.get("recorded_at") else "-")
        if has["seconds"]:
            row.append("-" if rnd.get("seconds") is None else f"{rnd['seconds']:.2f}")
        if has["sites_ok"]:
            failed = list(rnd.get("sites_failed") or []) + list(rnd.get("sites_timed_out") or [])
            row += [", ".join(rnd.get("sites_ok") or []) or "-", ", ".join(failed) or "-"]
        table.add_row(*row, *[value(metrics[n]) if n in metrics else "-" for n in names])
    return table


def round_summary(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per numeric metric: first, last, min and max over the rounds (show_stats)."""
    out: dict[str, dict[str, Any]] = {}
    for name in metric_names(rounds):
        series = [r["metrics"][name] for r in rounds if isinstance((r.get("metrics") or {}).get(name), (int, float))
                  and not isinstance(r["metrics"][name], bool)]
        if series:
            out[name] = {"first": series[0], "last": series[-1], "min": min(series), "max": max(series),
                         "rounds": len(series)}
    return out


def stats_doc(job: dict[str, Any]) -> dict[str, Any]:
    rounds = job.get("rounds") or []
    return {"job_id": job.get("job_id"), "name": job.get("name"), "status": job.get("status"),
            "rounds": rounds, "summary": round_summary(rounds)}


def stats(job: dict[str, Any]) -> RenderableType:
    rounds = job.get("rounds") or []
    head = Text(f"{job_label(job)} {job.get('status')}: {len(rounds)} round(s) completed"
                + (f" of {job.get('total_rounds')}" if job.get("total_rounds") else ""))
    if not rounds:
        return head
    summary = round_summary(rounds)
    parts: list[RenderableType] = [head, Text(""), rounds_table(rounds)]
    if summary:
        table = _table("METRIC", "FIRST", "LAST", "MIN", "MAX", title="summary")
        for name, s in summary.items():
            table.add_row(name, value(s["first"]), value(s["last"]), value(s["min"]), value(s["max"]))
        parts += [Text(""), table]
    return Group(*parts)


# ---- sites, GPUs, server -------------------------------------------------------------------


def _host(site: dict[str, Any]) -> dict[str, Any]:
    return (site.get("info") or {}).get("host") or {}


def _cpu_mem(host: dict[str, Any]) -> tuple[str, str]:
    cpu = host.get("cpu_percent")
    used, total = host.get("mem_used"), host.get("mem_total")
    mem = f"{size(used)} / {size(total)}" if used is not None and total else "-"
    return ("-" if cpu is None else f"{cpu:.0f}%"), mem


def sites_table(sites: list[dict[str, Any]]) -> RenderableType:
    if not sites:
        return Text("no sites have registered with the server")
    table = _table("SITE", "STATUS", "HEARTBEAT", "JOBS", "CPU", "MEMORY", "GPUS")
    for s in sites:
        info = s.get("info") or {}
        cpu, mem = _cpu_mem(_host(s))
        jobs = ", ".join(short(j) for j in info.get("jobs") or []) or "-"
        table.add_row(str(s.get("name")), status_text(s.get("status")), f"{age(s.get('heartbeat_age'))} ago",
                      jobs, cpu, mem, gpu_count(info))
    return table


def gpu_count(info: dict[str, Any]) -> str:
    """The GPUs a site offers its jobs (its declared inventory, else those it reports load
    for) and how many of them jobs hold: "2", "2 (1 held)"."""
    inventory = info.get("gpu_inventory")
    n = len(inventory) if isinstance(inventory, list) else len(info.get("gpus") or [])
    alloc = info.get("gpu_alloc")
    held = len({i for ids in alloc.values() if isinstance(ids, list) for i in ids}) \
        if isinstance(alloc, dict) else 0
    return f"{n} ({held} held)" if held else str(n)


SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24  # utilisation samples the gpu table's HISTORY column shows (the latest)


def sparkline(values: Iterable[float | None], width: int = SPARK_WIDTH, top: float = 100.0) -> str:
    """The last `width` values as block characters on a fixed 0..top scale (an idle GPU is a
    flat `▁` line, 5 % stays low); a blank where a sample had no value."""
    tail = list(values)[-width:] if width > 0 else []
    return "".join(" " if v is None else SPARK[min(len(SPARK) - 1, max(0, int(v / top * len(SPARK))))]
                   for v in tail)


def gpu_rows(sites: list[dict[str, Any]],
             history: dict[str, dict[int, dict[str, list[Any]]]] | None = None) -> list[dict[str, Any]]:
    """One entry per site: its GPUs, each process on them named by the job it runs for, each GPU
    with its recent `history` ({"t", "util", "mem_used"}, from Session.gpu_history); a site
    without GPUs has a `note` saying why (its heartbeat's `gpu_note`; plain "no GPU" when it
    said none, or has not sent its load yet). GPUs the site declared for its jobs
    (`gpu_inventory`: `flshell client --gpus 0:16,1:16`) that it sends no load for are listed
    too, `declared`, with the declared memory, the jobs holding them (`gpu_alloc`) and no load;
    the row's `load_note` says why there is none."""
    out = []
    for s in sites:
        info = s.get("info") or {}
        by_pid = {int(pid): job for job, pid in (info.get("job_pids") or {}).items() if str(pid).isdigit()}
        past = (history or {}).get(s.get("name")) or {}
        gpus = []
        for gpu in info.get("gpus") or []:
            gpu = dict(gpu)
            gpu["jobs"] = sorted({p.get("job_id") or by_pid.get(p.get("pid")) for p in gpu.get("processes") or []}
                                 - {None})
            gpu["history"] = past.get(gpu.get("index")) or {"t": [], "util": [], "mem_used": []}
            gpus.append(gpu)
        declared = _declared_gpus(info, {g.get("index") for g in gpus})
        row: dict[str, Any] = {"site": s.get("name"), "status": s.get("status"), "gpus": gpus + declared}
        if declared:
            row["load_note"] = info.get("gpu_note") or "the site sends no load for its declared GPUs"
        elif not gpus:
            row["note"] = info.get("gpu_note") or "no GPU"
        out.append(row)
    return out


def _declared_gpus(info: dict[str, Any], sampled: set[Any]) -> list[dict[str, Any]]:
    """The site's declared GPUs (`gpu_inventory`) it sent no load sample for."""
    inventory = info.get("gpu_inventory")
    alloc = info.get("gpu_alloc") if isinstance(info.get("gpu_alloc"), dict) else {}
    out = []
    for entry in inventory if isinstance(inventory, list) else []:
        if not isinstance(entry, dict) or entry.get("index") in sampled:
            continue
        index = entry.get("index")
        out.append({"index": index, "name": entry.get("name") or "", "declared": True,
                    "mem_total": entry.get("mem_total"), "mem_used": None, "util_percent": None,
                    "temperature_c": None, "power_w": None, "processes": [],
                    "jobs": sorted(j for j, ids in alloc.items() if isinstance(ids, list) and index in ids),
                    "history": {"t": [], "util": [], "mem_used": []}})
    return out


def gpu_table(rows: list[dict[str, Any]]) -> RenderableType:
    if not rows:
        return Text("no sites have registered with the server")
    table = _table("SITE", "GPU", "NAME", "UTIL", "HISTORY", "MEMORY", "TEMP", "POWER", "JOBS")
    for row in rows:
        if not row["gpus"]:
            note = row.get("note")
            text = Text("no GPU", style="dim")
            if note and note != "no GPU":
                text.append(f" ({note})", style="dim")
            table.add_row(str(row["site"]), "-", text, "", "", "", "", "", "")
        for g in row["gpus"]:
            jobs = ", ".join(short(j) for j in g["jobs"]) or "-"
            if g.get("declared"):  # no load samples: "-", unknown, not "n/a" (not supported)
                total = g.get("mem_total")
                table.add_row(str(row["site"]), str(g.get("index", "-")), f"{g.get('name') or 'declared'}",
                              "-", "-", f"- / {size(total)}" if total else "-", "-", "-", jobs)
                continue
            util = g.get("util_percent")
            used, total = g.get("mem_used"), g.get("mem_total")
            mem = f"{size(used)} / {size(total)}" if used is not None and total else "n/a"
            temp, power = g.get("temperature_c"), g.get("power_w")
            trail = sparkline((g.get("history") or {}).get("util") or [])
            table.add_row(str(row["site"]), str(g.get("index", "-")), str(g.get("name") or "-"),
                          "n/a" if util is None else f"{util:.0f}%", trail or "-", mem,
                          "n/a" if temp is None else f"{temp:.0f}°C", "n/a" if power is None else f"{power:.0f} W",
                          jobs)
        if row.get("load_note"):
            table.add_row(str(row["site"]), "", Text(f"load unknown (GPUs declared; the site says: {row['load_note']})", style="dim"),
                          "", "", "", "", "", "")
    return table


def kv_table(data: dict[str, Any], title: str | None = None) -> Table:
    """A dict as KEY / VALUE rows (nested dicts flattened to a.b keys)."""
    table = _table("KEY", "VALUE", title=title)
    for key, val in _flatten(data):
        if key.endswith(("started_at", "registered_at", "last_seen")) and isinstance(val, (int, float)):
            val = when(val)
        elif key.endswith(("mem_used", "mem_total")) and isinstance(val, (int, float)):
            val = size(val)
        table.add_row(key, value(val))
    return table


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key in sorted(data):
        val = data[key]
        if isinstance(val, dict) and val:
            yield from _flatten(val, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", val


def server_status(info: dict[str, Any]) -> RenderableType:
    """check_status server: is it up, since when, what runs, how many sites."""
    sites = info.get("sites") or {}
    running = info.get("running_jobs") or []
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("server", Text(f"{info.get('server', '-')} (pid {info.get('pid', '-')}) running", style="green"))
    grid.add_row("up", f"since {when(info.get('started_at'))} ({age(info.get('uptime'))})")
    grid.add_row("running jobs", f"{len(running)}" + (f": {', '.join(short(j) for j in running)}" if running else ""))
    grid.add_row("sites", ", ".join(f"{n} {status}" for status, n in sorted(sites.items())) or "none")
    grid.add_row("workspace", str(info.get("workspace", "-")))
    return grid


# ---- events (watch) ------------------------------------------------------------------------


def event_line(event: Any, names: dict[str, str], job: str | None = None) -> str | None:
    """One human line for a watch event, or None for events people need not see (`metrics`
    counts, task assignments: `round started on N sites` says it). `names` maps job ids to
    job names as job_status events reveal them; `job` leaves the job out of each line when
    the watch follows that one job."""
    data = event.data
    kind = event.type
    job_id = data.get("job_id")
    if kind == "job_status" and job_id and data.get("name"):
        names[job_id] = data["name"]
    who = "" if job_id is None or job_id == job else f"job {short(job_id)} ({names.get(job_id, '?')}) "
    text: str | None
    if kind == "job_status":
        text = f"job {short(job_id)} ({names.get(job_id, '?')}) {data.get('status')}"
        if data.get("reason"):
            text += f": {data['reason']}"
    elif kind == "round_started":
        text = f"{who}round {data.get('round', 0) + 1}/{data.get('total_rounds')} started on {data.get('sites')} site(s)"
    elif kind == "round_completed":
        metrics = " ".join(f"{k}={value(v)}" for k, v in (data.get("metrics") or {}).items())
        failed = list(data.get("sites_failed") or []) + list(data.get("sites_timed_out") or [])
        text = (f"{who}round {data.get('round', 0) + 1}/{data.get('total_rounds')} completed in "
                f"{data.get('seconds', 0):.2f}s" + (f", failed: {', '.join(failed)}" if failed else "")
                + (f": {metrics}" if metrics else ""))
    elif kind == "task_result":
        if data.get("ok"):
            text = f"{who}{data.get('site')} reported {data.get('task')} in {data.get('seconds', 0):.2f}s"
        else:
            text = (f"{who}{data.get('site')} FAILED {data.get('task')} after {data.get('seconds', 0):.2f}s"
                    + (f": {data['error']}" if data.get("error") else ""))
    elif kind == "site_status":
        extra = " (rejoined)" if data.get("rejoined") else " (new)" if data.get("new") else ""
        silent = f", silent {data['silent_for']:.0f}s" if data.get("silent_for") else ""
        text = f"site {data.get('site')} {data.get('status')}{extra}{silent}"
    elif kind == "job_deleted":
        text = f"job {short(job_id)} ({data.get('name')}) deleted"
    elif kind == "log":
        text = f"{who}[{data.get('site') or 'server'}] {data.get('line')}"
    elif kind == "dropped":
        text = f"(this watch fell behind: {data.get('count')} event(s) were dropped)"
    else:
        text = None
    return None if text is None else f"{clock(event.ts)} {text}"


def event_doc(event: Any) -> dict[str, Any]:
    return {"seq": event.seq, "ts": event.ts, "type": event.type, **event.data}


# ---- help ----------------------------------------------------------------------------------


def usage(cmd: Any) -> str:
    return cmd.parser.format_usage().strip().removeprefix("usage: ")


def help_table(groups: list[tuple[str, list[Any]]]) -> RenderableType:
    parts: list[RenderableType] = []
    for title, commands in groups:
        table = _table("COMMAND", "HELP", title=title)
        for cmd in commands:
            name = Text(usage(cmd))
            if cmd.destructive:
                name.append(" *", style="yellow")
            table.add_row(name, cmd.help)
        parts += [table, Text("")]
    parts.append(Text("* asks for confirmation (add -y to skip it). `help COMMAND` shows one command; "
                      "job ids may be any unique prefix, and `last` is the job most recently submitted here."))
    return Group(*parts)


def command_help(cmd: Any) -> str:
    return cmd.parser.format_help().rstrip()
