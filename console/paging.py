"""Paging through the API's keyset-paginated lists (`limit`, `cursor`, `next_cursor`; docs/api.md#pagination)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The API's largest page: as few requests as possible per refresh, still few enough rows to redraw every 2 s.
PAGE_SIZE = 500


@dataclass
class Pager:
    """Which page of a list the operator is on.

    The API only goes forward (each answer names the next page's cursor), so the cursor of every page visited is
    kept to go back. A refresh asks for the current page again with its cursor: with newest-first keyset pages
    the rows of page 2 stay the rows of page 2 while new ones arrive on page 1.
    """

    size: int = PAGE_SIZE
    cursors: list[str | None] = field(default_factory=lambda: [None])
    page: int = 0
    count: int = 0
    next_cursor: str | None = None

    @property
    def cursor(self) -> str | None:
        """The cursor to ask for the current page with (None: the first page)."""
        return self.cursors[self.page]

    def loaded(self, count: int, next_cursor: str | None) -> None:
        """The current page arrived with `count` rows."""
        self.count = count
        self.next_cursor = next_cursor

    def forward(self) -> bool:
        """Go to the next page, if the last answer named one."""
        if self.next_cursor is None:
            return False
        del self.cursors[self.page + 1 :]
        self.cursors.append(self.next_cursor)
        self.page += 1
        self.count, self.next_cursor = 0, None
        return True

    def back(self) -> bool:
        """Go to the previous page, if there is one."""
        if self.page == 0:
            return False
        self.page -= 1
        self.count, self.next_cursor = 0, None
        return True

    def reset(self) -> None:
        """Back to the first page (the filters changed: the cursors kept belong to another list)."""
        self.cursors, self.page, self.count, self.next_cursor = [None], 0, 0, None

    def describe(self, total: int | None = None, noun: str = "rows") -> str:
        """E.g. 'rows 501 to 1,000 of 12,345 · ] next page · [ previous' (with a dash); '' for an empty first page."""
        if self.count == 0 and self.page == 0:
            return ""
        first = self.page * self.size + 1
        last = self.page * self.size + self.count
        text = f"{noun} {first:,}–{last:,}" if self.count else f"no {noun} from {first:,} on"
        if total is not None:
            text += f" of {total:,}"
        if self.next_cursor is not None:
            text += " · ] next page"
        if self.page > 0:
            text += " · [ previous"
        return text
