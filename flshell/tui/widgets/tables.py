"""DataTables that sync to a list of rows by key (only changed cells are touched), with cell
styles named by CSS component classes, so colours stay in app.tcss."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

# A cell: plain text; (text, component class) to style it from app.tcss; or a list of those
# (text, class or None) pieces.


class SyncTable(DataTable):
    """A row-cursor DataTable filled by `sync(rows)`: rows are (key, cells) in display order."""

    COLUMNS: ClassVar[Sequence[tuple[str, str]]] = ()  # (key, label)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._order: list[str] = []
        self._cells: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)

    async def _on_idle(self, event: events.Idle) -> None:
        # DataTable measures new cells when idle but keeps rows it rendered before with the old
        # column widths (its caches are keyed on an update counter that measuring leaves alone):
        # when a width changed, drop those caches so the rows are drawn at the new widths.
        widths = [c.content_width for c in self.columns.values()]
        await super()._on_idle(event)
        if widths != [c.content_width for c in self.columns.values()]:
            self._clear_caches()
            self.refresh()

    def _cell_value(self, cell: Any) -> Any:
        if isinstance(cell, list):
            return Text.assemble(*((text, self.get_component_rich_style(c, partial=True) if c else "")
                                   for text, c in cell), no_wrap=True, overflow="ellipsis")
        if isinstance(cell, tuple):
            text, component = cell
            return Text(text, style=self.get_component_rich_style(component, partial=True),
                        no_wrap=True, overflow="ellipsis")
        return cell

    @property
    def selected_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    def sync(self, rows: list[tuple[str, Sequence[Any]]]) -> None:
        keys = [k for k, _ in rows]
        if keys != self._order:
            self._rebuild(rows)
            return
        columns = [k for k, _ in self.COLUMNS]
        for key, cells in rows:
            old = self._cells.get(key, ())
            for i, cell in enumerate(cells):
                if i >= len(old) or old[i] != cell:
                    # Only a wider cell widens its column: DataTable re-measures the whole column
                    # for a narrower one, which for 1000 rows updated at once is a million measures.
                    wider = _width(cell) > self.columns[ColumnKey(columns[i])].content_width
                    self.update_cell(key, columns[i], self._cell_value(cell), update_width=wider)
            self._cells[key] = tuple(cells)

    def _rebuild(self, rows: list[tuple[str, Sequence[Any]]]) -> None:
        selected = self.selected_key
        scroll_y = self.scroll_y
        self.clear()
        self._order, self._cells = [], {}
        for key, cells in rows:
            self.add_row(*(self._cell_value(c) for c in cells), key=key)
            self._order.append(key)
            self._cells[key] = tuple(cells)
        if selected in self._cells:
            self.move_cursor(row=self._order.index(selected), animate=False, scroll=False)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self._order.index(selected), animate=False)

    def select(self, key: str) -> bool:
        if key not in self._order:
            return False
        self.cursor_coordinate = Coordinate(self._order.index(key), 0)
        return True


def _width(cell: Any) -> int:
    if isinstance(cell, list):
        return sum(cell_len(text) for text, _ in cell)
    return cell_len(cell[0] if isinstance(cell, tuple) else str(cell))
