"""Live progress and the final summary of `flshell sim`, rendered with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sites reported"),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = None
        self._failed = 0

    def follow(self, sim: Simulator, sub) -> None:
        """Render events until the job ends."""
        assert sim.runner is not None
        if self.live:
            self.progress.start()
        try:
            while True:
                ev = sub.get(timeout=0.1)
                if ev is not None:
                    self._on_event(ev)
                    continue
                if sim.runner.done:
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
    style = {"COMPLETED": "green", "FAILED": "red", "ABORTED": "yellow"}.get(res.status, "white")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("status", f"[{style}]{res.status}[/]")
    table.add_row("job", escape(f"{res.job_name} ({res.job_id})"))
    total = res.total_rounds if res.total_rounds is not None else "?"
    table.add_row("rounds", f"{res.rounds_completed}/{total}")
    table.add_row("wall time", f"{res.wall_time:.2f}s")
    table.add_row("final metrics", _fmt_metrics(res.metrics))
    model = res.result_dir / "global_model.npz"
    if model.exists():
        table.add_row("global model", str(model))
    table.add_row("server log", str(res.server_log))
    table.add_row("site logs", str(res.workspace / "<site>" / "jobs" / res.job_id / "log.txt"))
    console.print(table)
    if res.status != "COMPLETED" and res.reason:
        console.print(f"[{style}]{res.status}:[/] {escape(res.reason)}", highlight=False)
    for why in dict.fromkeys(res.lost_sites.values()):  # one line per worker, naming its sites
        first, _, rest = why.partition("\n")
        console.print(f"[red]lost:[/] {escape(first)}", highlight=False)
        for line in rest.splitlines()[-3:]:
            console.print(f"    {line}", highlight=False, markup=False)
    for site, detail in list(res.failure_details.items())[:5]:
        console.print(f"[bold]{escape(site)}[/]:", highlight=False)
        for line in _tail(detail, 6):
            console.print(f"    {line}", highlight=False, markup=False)
    if len(res.failure_details) > 5:
        console.print(f"... and {len(res.failure_details) - 5} more sites (see the server log)")
