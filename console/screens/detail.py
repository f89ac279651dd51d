"""One announcement: its counts, its deliveries (filter, search), who has not acknowledged; cancel, resend."""

from __future__ import annotations

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Label, Select, Static

from bot import contracts
from console.messages import AnnouncementLoaded, CancelRequested, ResendUnknownRequested
from console.screens.base import RefreshingScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator, delivery_bar
from console.widgets.progress import acknowledged_pct

UNACKNOWLEDGED = "not acknowledged"
FILTER_OPTIONS = [(s, s) for s in contracts.DELIVERY_STATUSES] + [(UNACKNOWLEDGED, UNACKNOWLEDGED)]
COUNT_FIELDS = ("pending", "sending", "sent", "delivered", "read", "failed", "unknown", "cancelled", "skipped")


def counts_line(counts: contracts.Counts) -> str:
    """'total 40 · sent 3 · delivered 30 · …' listing only non-zero statuses."""
    parts = [f"total {counts.total}"]
    parts += [f"{name} {getattr(counts, name)}" for name in COUNT_FIELDS if getattr(counts, name)]
    parts.append(f"acknowledged {counts.acknowledged} ({acknowledged_pct(counts)})")
    return " · ".join(parts)


class AnnouncementScreen(RefreshingScreen):
    """Deliveries of one announcement, refreshed live."""

    AUTO_FOCUS = "#deliveries"
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "back", "Back"),
        Binding("c", "cancel", "Cancel"),
        Binding("u", "resend_unknown", "Resend unknown"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("f", "filter", "Filter"),
        Binding("r", "reload", "Refresh"),
    ]

    status_label = getters.query_one("#detail-status", Label)
    message_text = getters.query_one("#detail-message", Static)
    counts_bar = getters.query_one("#detail-bar", Static)
    counts_text = getters.query_one("#detail-counts", Static)
    filter_select = getters.query_one("#delivery-filter", Select)
    search_input = getters.query_one("#delivery-search", Input)
    table = getters.query_one("#deliveries", DataTable)

    def __init__(self, session: Session, announcement_id: int) -> None:
        super().__init__(session)
        self.announcement_id = announcement_id
        self.announcement: contracts.Announcement | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label(f"Announcement #{self.announcement_id}", classes="screen-title")
            yield Label("", id="detail-status")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Static("", id="detail-message")
        with Horizontal(id="detail-counts-row"):
            yield Static("", id="detail-bar")
            yield Static("loading…", id="detail-counts")
        with Horizontal(classes="toolbar"):
            yield Select(FILTER_OPTIONS, prompt="all deliveries", id="delivery-filter", allow_blank=True)
            yield Input(placeholder="search name or phone (/)", id="delivery-search")
        table: DataTable[object] = DataTable(id="deliveries", cursor_type="row", zebra_stripes=True)
        table.add_column("employee", key="name", width=16)
        table.add_column("phone", key="phone", width=13)
        table.add_column("status", key="status", width=9)
        # The error comes before the times: on a narrow terminal it is what the operator needs to see.
        table.add_column("error", key="error", width=24)
        table.add_column("try", key="attempts", width=3)
        table.add_column("sent", key="sent_at", width=11)
        table.add_column("ack", key="ack", width=11)
        yield table
        yield Footer()

    def _filters(self) -> tuple[str | None, bool | None, str | None]:
        value = self.filter_select.value
        status = value if isinstance(value, str) and value != UNACKNOWLEDGED else None
        acknowledged = False if value == UNACKNOWLEDGED else None
        q = self.search_input.value.strip() or None
        return status, acknowledged, q

    def reload(self) -> None:
        status, acknowledged, q = self._filters()
        self.load(status, acknowledged, q)

    @work(exclusive=True, group="announcement", exit_on_error=False)
    async def load(self, status: str | None, acknowledged: bool | None, q: str | None) -> None:
        """Fetch the announcement and its (filtered) deliveries."""
        announcement = await self.api.get_announcement(self.announcement_id)
        deliveries = await self.api.list_deliveries(
            self.announcement_id, status=status, acknowledged=acknowledged, q=q, limit=500
        )
        self.post_message(AnnouncementLoaded(announcement, deliveries))

    @on(AnnouncementLoaded)
    def _show(self, event: AnnouncementLoaded) -> None:
        a = self.announcement = event.announcement
        self.status_label.update(f"{a.status} · send {self.local(a.send_time)}")
        self.message_text.update(a.message)
        self.counts_bar.update(delivery_bar(a.counts, width=20))
        self.counts_text.update(counts_line(a.counts))
        table = self.table
        cursor = table.cursor_row
        table.clear()
        for d in event.deliveries.items:
            error = ""
            if d.error is not None:
                error = f"{d.error.code or ''} {d.error.title or ''}".strip()
            elif d.skip_reason:
                error = d.skip_reason
            table.add_row(
                d.employee_name,
                d.phone,
                d.status,
                error,
                str(d.attempts),
                self.local_short(d.sent_at),
                self.local_short(d.acknowledged_at),
                key=str(d.id),
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    @on(Select.Changed, "#delivery-filter")
    @on(Input.Changed, "#delivery-search")
    def _filter_changed(self) -> None:
        self.reload()

    def action_back(self) -> None:
        """Back to the list."""
        self.dismiss()

    def action_cancel(self) -> None:
        """Cancel this announcement, after confirmation."""
        if self.announcement is not None:
            self.post_message(CancelRequested(self.announcement))

    def action_resend_unknown(self) -> None:
        """Resend the deliveries whose outcome is unknown, after confirmation."""
        if self.announcement is not None:
            self.post_message(ResendUnknownRequested(self.announcement))

    def action_search(self) -> None:
        """Focus the search box."""
        self.search_input.focus()

    def action_filter(self) -> None:
        """Focus the status filter."""
        self.filter_select.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()
