"""The announcements list: newest first, live progress, status filter, pages; Enter opens one."""

from __future__ import annotations

from collections.abc import Iterable

from textual import getters, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Label, Select, Static

from bot import contracts
from console.messages import AnnouncementSelected, AnnouncementsLoaded, CancelRequested
from console.paging import Pager
from console.screens.base import PagedScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator, delivery_bar
from console.widgets.header import ConsoleHeader
from console.widgets.progress import acknowledged_pct
from console.widgets.table import Column, FittedTable

STATUS_OPTIONS = [(s, s) for s in contracts.ANNOUNCEMENT_STATUSES]
PREVIEW_CHARS = 30
# At 80 columns the fixed ones leave the message its minimum; wider terminals give the message the rest.
COLUMNS = (
    Column("id", "#", 4),
    Column("send_time", "send time", 16, drop=1),
    Column("status", "status", 11),
    Column("message", "message", flex=True, min_width=12),
    Column("progress", "progress", 12),
    Column("ack", "ack", 4),
    Column("total", "total", 5),
)


class AnnouncementsTable(FittedTable):
    """The list's table, with its Enter named in the footer: DataTable binds Enter itself (select the row, which
    opens it) without a footer hint, and the focused table's binding hides the screen's "enter Open"."""

    BINDINGS = [Binding("enter", "select_cursor", "Open")]  # noqa: RUF012


def preview(message: str, width: int = PREVIEW_CHARS) -> str:
    """The first line of a message, shortened to `width` characters."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class AnnouncementsScreen(PagedScreen):
    """Every announcement of this employer with how far its delivery has got."""

    AUTO_FOCUS = "#announcements"
    BINDINGS = [  # noqa: RUF012
        Binding("enter", "open", "Open", show=True),
        Binding("c", "cancel", "Cancel"),
        Binding("slash", "filter", "Filter", key_display="/"),
        # Not in the footer (no room at 80 columns; the list refreshes itself): in the command palette.
        Binding("r", "reload", "Refresh", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        # The operator is on the list already: 'a' stays a key that works, without a footer hint.
        Binding("a", "app.announcements", "Announcements", show=False),
    ]

    table = getters.query_one("#announcements", FittedTable)
    status_select = getters.query_one("#status-filter", Select)
    empty_label = getters.query_one("#announcements-empty", Label)
    position_label = getters.query_one("#announcements-position", Label)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.announcements: list[contracts.Announcement] = []
        self.pager = Pager()

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Announcements", classes="screen-title")
            yield Select(STATUS_OPTIONS, prompt="all statuses", id="status-filter", allow_blank=True)
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield AnnouncementsTable(COLUMNS, id="announcements")
        yield Label("", id="announcements-empty", classes="empty")
        yield Label("", id="announcements-position", classes="position")
        yield Footer(compact=True)

    @property
    def status_filter(self) -> str | None:
        value = self.status_select.value
        return value if isinstance(value, str) else None

    def reload(self) -> None:
        self.load(self.status_filter, self.pager.cursor)

    @work(exclusive=True, group="announcements", exit_on_error=False)
    async def load(self, status: str | None, cursor: str | None) -> None:
        """Fetch the page of announcements the operator is on (with the status filter) and post it."""
        page = await self.api.list_announcements(status=status, cursor=cursor, limit=self.pager.size)
        self.post_message(AnnouncementsLoaded(page, cursor))

    @on(AnnouncementsLoaded)
    def _show(self, event: AnnouncementsLoaded) -> None:
        if event.cursor != self.pager.cursor:
            return  # an answer for the page the operator just left
        items = sorted(event.page.items, key=lambda a: (a.created_at, a.id), reverse=True)
        self.announcements = items
        self.pager.loaded(len(items), event.page.next_cursor)
        self.table.show(
            [
                (
                    str(a.id),
                    {
                        "id": str(a.id),
                        "send_time": self.local(a.send_time),
                        "status": a.status,
                        "message": a.message,
                        "progress": delivery_bar(a.counts),
                        "ack": acknowledged_pct(a.counts),
                        "total": str(a.counts.total),
                    },
                )
                for a in items
            ]
        )
        self.empty_label.update(self.empty_text())
        self.empty_label.display = not items
        self.position_label.update(self.pager.describe())

    def empty_text(self) -> str:
        """Why the list is empty, and what to do about it."""
        if self.status_filter is not None:
            return (
                f"No announcement is {self.status_filter}. Press esc to clear the filter and see every "
                "announcement, or / to choose another status."
            )
        if self.pager.page > 0:
            return "No more announcements. Press [ for the previous page."
        return "No announcements yet. Press n to write one."

    @on(Select.Changed, "#status-filter")
    def _filter_changed(self) -> None:
        # The cursors kept belong to the list under the old filter.
        self.pager.reset()
        self.reload()

    @property
    def selected_id(self) -> int | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None

    @on(DataTable.RowSelected, "#announcements")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.post_message(AnnouncementSelected(int(event.row_key.value)))

    def action_open(self) -> None:
        """Open the selected announcement."""
        if (selected := self.selected_id) is not None:
            self.post_message(AnnouncementSelected(selected))

    def action_cancel(self) -> None:
        """Cancel the selected announcement, after confirmation."""
        if (selected := self.selected_id) is not None:
            found = next((a for a in self.announcements if a.id == selected), None)
            if found is not None:
                self.post_message(CancelRequested(found))

    def action_filter(self) -> None:
        """Focus the status filter."""
        self.status_select.focus()

    def action_clear_filter(self) -> None:
        """Show every status again."""
        if self.status_filter is not None:
            self.status_select.clear()
            self.table.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()

    def commands(self) -> Iterable[SystemCommand]:
        yield from self.page_commands("Older announcements (])", "Newer announcements ([)")
        yield SystemCommand("Cancel announcement", "Cancel the selected announcement (c)", self.action_cancel)
        yield SystemCommand("Filter by status", "Show one status only (/; esc clears)", self.action_filter)
