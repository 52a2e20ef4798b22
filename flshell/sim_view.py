"""Live progress and the final summary of `flshell sim`, rendered with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flshell.console.render import evaluation_tables

from runtime.jobs.errors import names
from runtime.sim.simulator import SimulationResult, Simulator


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for k, v in metrics.items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
    return escape(", ".join(parts)) or "-"  # names are user text, not rich markup


def _tail(text: str, n: int) -> list[str]:
    return [ln for ln in text.rstrip().splitlines() if ln.strip()][-n:]


class ProgressView:
    """Follows the simulator's event stream: a bar per round, a line per finished round."""

    def __init__(self, console: Console, quiet: bool = False, on_running=None) -> None:
        self.console = console
        self.quiet = quiet
        self.on_running = on_running  # called once when the job starts running
        self.live = console.is_terminal and not quiet
        # no redirect of sys.stdout/stderr: sites' prints are routed to their logs per thread
        # (runtime.client.threadio); a redirect would wrap that routing, and restoring it when the
        # bar stops (Ctrl-C, the job's end) would send scripts still running to the terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sites reported"),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = None
        self._failed = 0

    def follow(self, sim: Simulator, sub) -> None:
        """Render events until the job ends."""
        if sim.runner is None:  # the job ended before it ran
            return
        if self.live:
            self.progress.start()
        try:
            while True:
                ev = sub.get(timeout=0.1)
                if ev is not None:
                    self._on_event(ev)
                    continue
                if sim.done:
                    for ev in sub.drain():
                        self._on_event(ev)
                    return
        finally:
            if self.live:
                self.progress.stop()

    def _on_event(self, ev: dict[str, Any]) -> None:
        t = ev["type"]
        if t == "round_started":
            self._failed = 0
            desc = f"Round {ev['round'] + 1}/{ev['total_rounds']}"
            if self.live:
                if self._task is not None:
                    self.progress.remove_task(self._task)
                self._task = self.progress.add_task(desc, total=ev["sites"], failed="")
        elif t == "task_result" and self._task is not None and self.live:
            if not ev["ok"]:
                self._failed += 1
            self.progress.update(
                self._task, advance=1,
                failed=f"[red]{self._failed} failed[/]" if self._failed else "",
            )
        elif t == "round_completed" and not self.quiet:
            failed = ev.get("sites_failed", []) + ev.get("sites_timed_out", [])
            note = f"  [yellow]({len(failed)} failed: {escape(', '.join(failed[:5]))})[/]" if failed else ""
            self.console.print(
                f"round {ev['round'] + 1}/{ev['total_rounds']} done in {ev['seconds']:.2f}s: "
                f"{len(ev['sites_ok'])} sites, {_fmt_metrics(ev['metrics'])}{note}",
                highlight=False,
            )
        elif t == "job_status" and ev["status"] == "RUNNING" and self.on_running is not None:
            self.on_running()
            self.on_running = None
        elif t == "job_status" and not self.quiet and ev["status"] == "WAITING":
            self.console.print(f"[dim]{escape(ev.get('reason') or 'waiting for sites')}[/]")


def print_summary(console: Console, res: SimulationResult) -> None:
    """Status, rounds, time, metrics and where things are, one line each; then what went
    wrong. Lines are printed whole (soft wrap): a path is never broken by a newline."""
    style = {"COMPLETED": "green", "FAILED": "red", "ABORTED": "yellow"}.get(res.status, "white")
    total = res.total_rounds if res.total_rounds is not None else "?"
    rows = [
        ("status", f"[{style}]{res.status}[/]"),
        ("job", escape(f"{res.job_name} ({res.job_id})")),
        ("rounds", f"{res.rounds_completed}/{total}"),
        ("wall time", f"{res.wall_time:.2f}s"),
        ("final metrics", _fmt_metrics(res.metrics)),
    ]
    model = res.result_dir / "global_model.npz"
    if model.exists():
        rows.append(("global model", escape(str(model))))
    rows.append(("server log", escape(str(res.server_log))))
    rows.append(("site logs", escape(str(res.workspace / "<site>" / "jobs" / res.job_id / "log.txt"))))
    if res.idle_sites:
        them = "it" if len(res.idle_sites) == 1 else "them"
        rows.append(("idle sites", escape(names(res.idle_sites))
                     + f" (meta.json's deploy_map gives {them} no app)"))
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        console.print(f"[bold]{key:<{width}}[/]{value}", highlight=False, soft_wrap=True)
    if res.status != "COMPLETED" and res.reason:
        console.print(f"[{style}]{res.status}:[/] {escape(res.reason)}", highlight=False, soft_wrap=True)
    for why in dict.fromkeys(res.lost_sites.values()):  # one line per worker, naming its sites
        first, _, rest = why.partition("\n")
        console.print(f"[red]lost:[/] {escape(first)}", highlight=False, soft_wrap=True)
        for line in rest.splitlines()[-3:]:
            console.print(f"    {line}", highlight=False, markup=False, soft_wrap=True)
    _print_round_failures(console, res)
    for table in evaluation_tables(res.results):
        console.print(table)
    for site, detail in list(res.failure_details.items())[:5]:
        console.print(f"[bold]{escape(site)}[/]:", highlight=False)
        for line in _tail(detail, 6):
            console.print(f"    {line}", highlight=False, markup=False, soft_wrap=True)
    if len(res.failure_details) > 5:
        console.print(f"... and {len(res.failure_details) - 5} more sites (see the server log)")


def _print_round_failures(console: Console, res: SimulationResult, limit: int = 5) -> None:
    """Sites that failed in completed rounds (tolerated, so the job may still have completed):
    `site-3 failed in all 5 rounds: OSError: ...`."""
    shown = [(s, f) for s, f in res.site_failures.items() if s not in res.lost_sites]
    for site, f in shown[:limit]:
        if f.failed == f.rounds:
            how = "its only round" if f.rounds == 1 else f"all {f.rounds} rounds"
        else:
            how = f"{f.failed} of {f.rounds} rounds"
        error = f": {escape(f.last_error)}" if f.last_error else ""
        console.print(f"[yellow]{escape(site)} failed in {how}[/]{error}", highlight=False, soft_wrap=True)
    if len(shown) > limit:
        console.print(f"... and {len(shown) - limit} more sites failed in some rounds "
                      f"(see the server log)", highlight=False, soft_wrap=True)
