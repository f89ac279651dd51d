"""Inbox: what employees wrote back (replies, acknowledgements, STOP/START), newest first."""

from __future__ import annotations

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Static

from console.messages import MessagesLoaded
from console.screens.announcements import preview
from console.screens.base import RefreshingScreen
from console.widgets import ConnectionIndicator, SenderIndicator


class InboxScreen(RefreshingScreen):
    """Inbound messages, refreshed every few seconds."""

    REFRESH_SECONDS = 5.0
    AUTO_FOCUS = "#inbox"
    BINDINGS = [  # noqa: RUF012
        Binding("r", "reload", "Refresh"),
        # As on the employees screen: esc goes back to the announcements list.
        Binding("escape", "app.switch_mode('announcements')", "Back", show=False),
    ]

    table = getters.query_one("#inbox", DataTable)
    empty_label = getters.query_one("#inbox-empty", Label)

    def compose(self) -> ComposeResult:
        yield Header()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Inbox", classes="screen-title")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        table: DataTable[object] = DataTable(id="inbox", cursor_type="row", zebra_stripes=True)
        table.add_column("received", key="received", width=16)
        table.add_column("from", key="from", width=18)
        table.add_column("type", key="type", width=8)
        table.add_column("text", key="text", width=40)
        table.add_column("re #", key="announcement", width=5)
        yield table
        yield Label("", id="inbox-empty", classes="empty")
        yield Footer()

    def reload(self) -> None:
        self.load()

    @work(exclusive=True, group="inbox", exit_on_error=False)
    async def load(self) -> None:
        """Fetch the newest inbound messages."""
        page = await self.api.list_messages(limit=200)
        self.post_message(MessagesLoaded(page))

    @on(MessagesLoaded)
    def _show(self, event: MessagesLoaded) -> None:
        table = self.table
        table.clear()
        for m in event.page.items:
            table.add_row(
                self.local(m.received_at),
                m.employee_name or "(unknown number)",
                m.type,
                preview(m.text or "", 40),
                str(m.announcement_id) if m.announcement_id is not None else "",
                key=str(m.id),
            )
        self.empty_label.update("" if event.page.items else "No messages from employees yet.")
        self.empty_label.display = not event.page.items

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()
