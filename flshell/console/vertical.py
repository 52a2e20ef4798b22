"""Vertical output (psql's \\x): tables as records of one field per line, always (`on`) or only
when a table is wider than the screen (`auto`); part of the output layer (flshell.console.render)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from flshell.console.render import PIPE_WIDTH

EXPANDED_MODES = ("off", "on", "auto")


def expand(renderable: RenderableType, mode: str, width: int = 80) -> RenderableType:
    """Vertical output (psql's \\x): with `on`, every table becomes records of one field per
    line; with `auto`, only tables wider than `width` columns; `off` leaves them alone. Grids
    (key/value lists such as show_job's fields) are vertical already and stay."""
    if mode == "off":
        return renderable
    if isinstance(renderable, Group):
        return Group(*(expand(r, mode, width) for r in renderable.renderables))
    if isinstance(renderable, Table) and renderable.show_header and renderable.columns:
        if mode == "on" or natural_width(renderable) > width:
            return records(renderable)
    return renderable


def natural_width(renderable: RenderableType) -> int:
    """The columns `renderable` takes when nothing has to wrap."""
    return Console(width=PIPE_WIDTH, color_system=None).measure(renderable).maximum


def records(table: Table) -> RenderableType:
    """A table as `-[ RECORD n ]` blocks, one `FIELD │ value` line per column (psql's \\x)."""
    headers = [Text.from_markup(c.header) if isinstance(c.header, str) else c.header for c in table.columns]
    names = [h.plain if isinstance(h, Text) else str(h) for h in headers]
    cells = [list(c.cells) for c in table.columns]
    key_width = max(map(len, names))
    parts: list[RenderableType] = []
    if table.title:
        parts.append(Text(str(table.title), style="bold"))
    for i in range(table.row_count):
        parts.append(Text(f"-[ RECORD {i + 1} ]", style="dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True, min_width=key_width)
        grid.add_column(no_wrap=True, width=1)
        grid.add_column(overflow="fold")
        for name, column in zip(names, cells):
            cell = column[i] if i < len(column) else ""
            grid.add_row(name, "│", cell)
        parts.append(grid)
    return Group(*parts)
