"""The GPUs panel: one line per site and GPU (utilisation sparkline on a fixed 0-100 scale,
memory bar, temperature, power, the jobs on it); sites without GPUs are said plainly."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from flshell.tui import format as fmt
from flshell.tui.state import FederationState

LEVELS = ("light", "moderate", "heavy", "none")
MAX_NAMES = 6  # sites named in the "no GPU" line before "and N more"
BAR = 8         # cells of the memory bar
MIN_SPARK, MAX_SPARK = 8, 40
JOBS_ROOM = 9   # cells kept for the job on the GPU (one short id)


class GpuRow(Widget):
    """`site-1 GPU0 ▁▃▅▇█ 71% mem ████▋  84% 63°C 212W abc12345`, shortened to fit its width."""

    COMPONENT_CLASSES: ClassVar[set[str]] = (
        {f"gpu--{lv}" for lv in LEVELS} | {f"gpu--{lv}-bar" for lv in LEVELS}
        | {"gpu--label", "gpu--dim", "gpu--stale"})
    DEFAULT_CSS = "GpuRow { height: 1; }"

    def __init__(self, site: str, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site, self.index = site, index
        self.gpu: dict[str, Any] = {}
        self.history: list[float] = []
        self.stale = False

    def show(self, gpu: dict[str, Any], history: list[float], stale: bool) -> None:
        if gpu != self.gpu or history != self.history or stale != self.stale:
            self.gpu, self.history, self.stale = dict(gpu), list(history), stale
            self.set_class(stale, "-stale")
            self.refresh()

    def _style(self, name: str) -> Any:
        return self.get_component_rich_style("gpu--stale" if self.stale else name, partial=True)

    def render(self) -> Text:
        g, width = self.gpu, self.size.width or 80
        util = g.get("util_percent")
        used, total = g.get("mem_used"), g.get("mem_total")
        mem_pct = 100.0 * used / total if used is not None and total else None
        ulevel, mlevel = fmt.level(util, fmt.UTIL_LEVELS), fmt.level(mem_pct, fmt.MEM_LEVELS)
        temp, power = g.get("temperature_c"), g.get("power_w")
        jobs = sorted({p["job_id"][:8] for p in g.get("processes") or () if p.get("job_id")})
        # temperature and power are dropped (power first) while the sparkline would get under
        # MIN_SPARK cells; the jobs on the GPU go last, where there is room (rows stay aligned)
        extras = [f" {temp:>3.0f}°C" if temp is not None else "     -",
                  f" {power:>4.0f}W" if power is not None else "      -"]
        label_w = min(16, max(len(f"{self.site} GPU{self.index}"), 10))
        fixed = label_w + 1 + 5 + 4 + BAR + 5
        while extras and width - fixed - sum(map(len, extras)) - 1 - JOBS_ROOM < MIN_SPARK:
            extras.pop()
        spark_w = max(0, min(MAX_SPARK, width - fixed - sum(map(len, extras)) - 1 - JOBS_ROOM))
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{self.site} GPU{self.index}"[:label_w].ljust(label_w) + " ", self._style("gpu--label"))
        if spark_w >= MIN_SPARK:
            text.append(fmt.spark(self.history, spark_w) + " ", self._style(f"gpu--{ulevel}"))
        text.append(f"{fmt.percent(util):>4} ", self._style(f"gpu--{ulevel}"))
        text.append("mem ", self._style("gpu--dim"))
        text.append(fmt.bar(None if mem_pct is None else mem_pct / 100, BAR), self._style(f"gpu--{mlevel}-bar"))
        text.append(f"{fmt.percent(mem_pct):>5}", self._style(f"gpu--{mlevel}"))
        for piece in extras:
            text.append(piece, self._style("gpu--dim"))
        if jobs:
            text.append(" " + ",".join(jobs), self._style("gpu--dim"))
        return text


class GpuPanel(VerticalScroll):
    """Rows are added and removed as sites report GPUs; without any, one plain line says so.
    With `site`, only that site's GPUs (the site screen)."""

    def __init__(self, site: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.rows: dict[tuple[str, int], GpuRow] = {}

    def compose(self):
        yield Static("no GPU", id="no-gpu")

    def show(self, state: FederationState) -> None:
        wanted: dict[tuple[str, int], dict[str, Any]] = {}
        without: list[str] = []
        for name in sorted(state.sites) if self.site is None else [self.site]:
            gpus = (state.sites.get(name, {}).get("info") or {}).get("gpus") or []
            for gpu in gpus:
                wanted[(name, int(gpu.get("index", 0)))] = gpu
            if not gpus:
                without.append(name)
        for key in [k for k in self.rows if k not in wanted]:
            self.rows.pop(key).remove()
        new = [GpuRow(site, index) for site, index in wanted if (site, index) not in self.rows]
        for row in new:
            self.rows[(row.site, row.index)] = row
        if new:
            self.mount_all(new, before=self.query_one("#no-gpu"))
        for key, gpu in wanted.items():
            site = state.sites.get(key[0], {})
            self.rows[key].show(gpu, list(state.gpu_util.get(key, ())), site.get("status") != "CONNECTED")
        notes = {(state.sites.get(n, {}).get("info") or {}).get("gpu_note") for n in without}
        note = notes.pop() if len(notes) == 1 else None  # said once when all sites say the same
        self.query_one("#no-gpu", Static).update(_no_gpu_line(without, bool(wanted), note))
        self.border_subtitle = f"{len(wanted)} GPU" + ("" if len(wanted) == 1 else "s")
        self.set_class(not wanted, "-none")  # app.tcss gives an empty panel less room


def _no_gpu_line(sites: list[str], any_gpu: bool, note: str | None = None) -> str:
    """Who has no GPU, and why when they all say the same (their heartbeats' gpu_note)."""
    if not sites:
        return ""
    why = f" ({note})" if note and note != "no GPU" else ""
    if not any_gpu:
        return "no GPU" + (f" on any of the {len(sites)} sites" if len(sites) > 1 else f" on {sites[0]}") + why
    names = ", ".join(sites[:MAX_NAMES]) + (f" and {len(sites) - MAX_NAMES} more" if len(sites) > MAX_NAMES else "")
    return f"no GPU: {names}{why}"
