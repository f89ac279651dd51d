"""A DataTable whose columns fit the terminal: laid out again whenever its width changes, in both directions.

Textual sizes a column without a width to the widest cell it has ever held and never shrinks it (even across
`clear()`), so a table filled at 120 columns keeps its wide columns at 80 and pushes the last ones off screen.
Here every column gets an explicit width from the width there is; flexible columns share what the fixed ones
leave, and columns marked droppable are left out, least important first, when even that is not enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.widgets import DataTable

Cells = Mapping[str, object]


@dataclass(frozen=True)
class Column:
    """One column: fixed (`width`) or flexible (`flex`: from `min_width` up to `width`, 0 meaning no limit)."""

    key: str
    label: str
    width: int = 0
    flex: bool = False
    min_width: int = 8
    # 0: always shown. Otherwise it may be left out on a narrow terminal, the highest number first.
    drop: int = 0


Layout = tuple[tuple[str, int], ...]


def fit_columns(columns: Sequence[Column], available: int, padding: int = 1) -> Layout:
    """(key, width) of each column shown when the table has `available` cells across.

    Each column also takes `padding` cells on either side. Droppable columns go (highest `drop` first) until
    the fixed widths and the flexible minimums fit; the cells left over are handed out one at a time to the
    flexible columns still below their limit, so they grow evenly.
    """
    shown = list(columns)

    def needed(cols: Sequence[Column]) -> int:
        return sum((c.min_width if c.flex else c.width) + 2 * padding for c in cols)

    for victim in sorted((c for c in columns if c.drop), key=lambda c: -c.drop):
        if needed(shown) <= available:
            break
        shown.remove(victim)
    widths = {c.key: c.min_width if c.flex else c.width for c in shown}
    spare = available - needed(shown)
    growing = [c for c in shown if c.flex]
    while spare > 0 and growing:
        for c in list(growing):
            if spare == 0:
                break
            if c.width and widths[c.key] >= c.width:
                growing.remove(c)
                continue
            widths[c.key] += 1
            spare -= 1
    return tuple((c.key, widths[c.key]) for c in shown)


def shorten(value: object, width: int) -> object:
    """A string longer than the column ends in '…'; anything else (styled Text, bars) is the caller's to size."""
    if isinstance(value, str):
        line = " ".join(value.split())
        return line if len(line) <= width else line[: max(0, width - 1)] + "…"
    return value


class FittedTable(DataTable[object]):
    """A row-cursor table of `columns`; `show(rows)` replaces its rows, keeping the cursor on the same row."""

    def __init__(self, columns: Sequence[Column], *, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.specs = tuple(columns)
        self.column_layout: Layout = ()
        self._rows: list[tuple[str, Cells]] = []

    def _available(self, width: int) -> int:
        # Room for the vertical scrollbar is always kept, so the layout does not change when rows start to
        # overflow (which would re-lay the table on every refresh that crosses that line).
        return max(0, width - self.styles.scrollbar_size_vertical)

    def on_resize(self, event: events.Resize) -> None:
        self.reflow(event.size.width)

    def reflow(self, width: int) -> None:
        """Lay the columns out for `width` cells; rebuild only when the layout changes."""
        if width <= 0:
            return
        layout = fit_columns(self.specs, self._available(width), self.cell_padding)
        if layout == self.column_layout:
            return
        self.column_layout = layout
        labels = {c.key: c.label for c in self.specs}
        self.clear(columns=True)
        for key, w in layout:
            self.add_column(labels[key], key=key, width=w)
        self._fill()

    def show(self, rows: Sequence[tuple[str, Cells]]) -> None:
        """Replace the rows (key, {column key: value}); values of columns not shown are ignored."""
        self._rows = list(rows)
        if not self.column_layout:
            # Rows can arrive before the first Resize: lay out for the width known now.
            self.reflow(self.size.width or self.app.size.width)
            if self.column_layout:
                return  # reflow filled the rows
        self._fill()

    def _fill(self) -> None:
        # Keep the cursor on the row it was on (by key); if that row is gone, on the same line.
        old_index = self.cursor_row
        old_key: str | None = None
        if self.row_count:
            old_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        self.clear()
        for key, cells in self._rows:
            self.add_row(*(shorten(cells.get(c, ""), w) for c, w in self.column_layout), key=key)
        if not self.row_count:
            return
        if old_key is not None and old_key in self.rows:
            self.move_cursor(row=self.get_row_index(old_key), animate=False)
        else:
            self.move_cursor(row=min(old_index, self.row_count - 1), animate=False)

    def cell(self, row_key: str, column_key: str) -> object:
        """The value given for a cell, whether or not its column is shown now."""
        for key, cells in self._rows:
            if key == row_key:
                return cells.get(column_key)
        raise KeyError(row_key)


def styled(value: str, style: str) -> Text:
    """A cell in a colour (Text cells are never shortened: keep them short)."""
    return Text(value, style=style)
