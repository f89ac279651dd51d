"""The announcements list: newest first, live progress, status filter; Enter opens one."""

from __future__ import annotations

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select, Static

from bot import contracts
from console.messages import AnnouncementSelected, AnnouncementsLoaded, CancelRequested
from console.screens.base import RefreshingScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator, delivery_bar
from console.widgets.progress import acknowledged_pct

STATUS_OPTIONS = [(s, s) for s in contracts.ANNOUNCEMENT_STATUSES]
PREVIEW_CHARS = 30
# Widths of the other columns plus cell padding: what the message preview cannot use.
FIXED_COLUMNS = 4 + 16 + 11 + 12 + 4 + 5 + 2 * 7 + 2


def preview(message: str, width: int = PREVIEW_CHARS) -> str:
    """The first line of a message, shortened to `width` characters."""
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class AnnouncementsScreen(RefreshingScreen):
    """Every announcement of this employer with how far its delivery has got."""

    AUTO_FOCUS = "#announcements"
    BINDINGS = [  # noqa: RUF012
        Binding("enter", "open", "Open", show=True),
        Binding("c", "cancel", "Cancel"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "reload", "Refresh"),
    ]

    table = getters.query_one("#announcements", DataTable)
    status_select = getters.query_one("#status-filter", Select)
    empty_label = getters.query_one("#announcements-empty", Label)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.announcements: list[contracts.Announcement] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Announcements", classes="screen-title")
            yield Select(STATUS_OPTIONS, prompt="all statuses", id="status-filter", allow_blank=True)
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        table: DataTable[object] = DataTable(id="announcements", cursor_type="row", zebra_stripes=True)
        table.add_column("#", key="id", width=4)
        table.add_column("send time", key="send_time", width=16)
        table.add_column("status", key="status", width=11)
        table.add_column("message", key="message")  # sized to the terminal, see _preview_width
        table.add_column("progress", key="progress", width=12)
        table.add_column("ack", key="ack", width=4)
        table.add_column("total", key="total", width=5)
        yield table
        yield Label("", id="announcements-empty", classes="empty")
        yield Footer()

    @property
    def status_filter(self) -> str | None:
        value = self.status_select.value
        return value if isinstance(value, str) else None

    def reload(self) -> None:
        self.load(self.status_filter)

    @work(exclusive=True, group="announcements", exit_on_error=False)
    async def load(self, status: str | None) -> None:
        """Fetch the newest announcements (with the status filter) and post them."""
        page = await self.api.list_announcements(status=status, limit=100)
        self.post_message(AnnouncementsLoaded(page))

    @on(AnnouncementsLoaded)
    def _show(self, event: AnnouncementsLoaded) -> None:
        table = self.table
        # Keep the operator's cursor on the same announcement across refreshes.
        selected = self.selected_id
        items = sorted(event.page.items, key=lambda a: (a.created_at, a.id), reverse=True)
        self.announcements = items
        table.clear()
        for a in items:
            table.add_row(
                str(a.id),
                self.local(a.send_time),
                a.status,
                preview(a.message, max(12, self.size.width - FIXED_COLUMNS)),
                delivery_bar(a.counts),
                acknowledged_pct(a.counts),
                str(a.counts.total),
                key=str(a.id),
            )
        if selected is not None and str(selected) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected)))
        self.empty_label.update("" if items else "No announcements yet. Press n to write one.")
        self.empty_label.display = not items

    @on(Select.Changed, "#status-filter")
    def _filter_changed(self) -> None:
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

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()
