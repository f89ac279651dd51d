"""Inbox: what employees wrote back, newest first; acknowledgements hidden on request, by employee if wished.

Which messages are acknowledgements is the service's call (`GET /messages?acknowledgements=false` leaves them
out); grouping and the name filter are done in the console on the page it answered. Enter opens the conversation
with the employee who wrote the message.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import getters, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Label, Static

from bot import contracts
from console.messages import ConversationRequested, MessagesLoaded
from console.paging import Pager
from console.screens.base import PagedScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator
from console.widgets.header import ConsoleHeader
from console.widgets.table import Column, FittedTable

COLUMNS = (
    Column("received", "received", 16),
    Column("from", "from", 24, flex=True, min_width=12),
    Column("type", "type", 8, drop=1),
    Column("text", "text", flex=True, min_width=16),
    Column("announcement", "re #", 5),
    # ✓ once someone replied to the employee after this message (the API's `answered`).
    Column("answered", "ans", 3),
)


def sender_name(message: contracts.InboundMessage) -> str:
    return message.employee_name or "(unknown number)"


class InboxScreen(PagedScreen):
    """Inbound messages, refreshed every few seconds; acknowledgements hidden until asked for."""

    REFRESH_SECONDS = 5.0
    AUTO_FOCUS = "#inbox"
    BINDINGS = [  # noqa: RUF012
        Binding("h", "toggle_acks", "Acks", tooltip="Hide or show acknowledgements (taps and 'Got it' replies)"),
        Binding("g", "toggle_group", "Group", tooltip="Group the messages by employee"),
        Binding("f", "from_filter", "From", tooltip="Only messages from employees whose name has this text"),
        Binding("r", "reload", "Refresh", show=False),
        # As on the employees screen: esc goes back to the announcements list.
        Binding("escape", "app.announcements", "Back", show=False),
        # The operator is here already: the key still works, without a footer hint.
        Binding("i", "app.switch_mode('inbox')", "Inbox", show=False),
    ]

    table = getters.query_one("#inbox", FittedTable)
    empty_label = getters.query_one("#inbox-empty", Label)
    position_label = getters.query_one("#inbox-position", Label)
    view_label = getters.query_one("#inbox-view", Label)
    from_input = getters.query_one("#inbox-from", Input)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.pager = Pager()
        # Questions are what the operator comes here for: acknowledgements start hidden (left out by the server).
        self.hide_acks = True
        self.grouped = False
        self.messages: list[contracts.InboundMessage] = []

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label("Inbox", classes="screen-title")
            yield Label("", id="inbox-view")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Input(placeholder="from: part of an employee's name (f)", id="inbox-from")
        yield FittedTable(COLUMNS, id="inbox")
        yield Label("", id="inbox-empty", classes="empty")
        yield Label("", id="inbox-position", classes="position")
        yield Footer(compact=True)

    def reload(self) -> None:
        self.load(self.pager.cursor, self.hide_acks)

    @work(exclusive=True, group="inbox", exit_on_error=False)
    async def load(self, cursor: str | None, hide_acks: bool) -> None:
        """Fetch the page of inbound messages the operator is on (without acknowledgements when they are hidden)."""
        page = await self.api.list_messages(
            cursor=cursor, limit=self.pager.size, acknowledgements=False if hide_acks else None
        )
        self.post_message(MessagesLoaded(page, cursor))

    @on(MessagesLoaded)
    def _loaded(self, event: MessagesLoaded) -> None:
        if event.cursor != self.pager.cursor:
            return  # an answer for the page the operator just left
        self.messages = list(event.page.items)
        self.pager.loaded(len(self.messages), event.page.next_cursor)
        self.redraw()

    def shown_messages(self) -> list[contracts.InboundMessage]:
        """The messages to show, in order (acknowledgements were left out by the server when hidden)."""
        shown = self.messages
        needle = self.from_input.value.strip().lower()
        if needle:
            shown = [m for m in shown if needle in sender_name(m).lower()]
        if self.grouped:
            # Each employee's messages together (alphabetically, unknown numbers last), newest first within.
            newest_first = {m.id: i for i, m in enumerate(shown)}
            shown = sorted(shown, key=lambda m: (m.employee_name is None, sender_name(m).lower(), newest_first[m.id]))
        return shown

    def redraw(self) -> None:
        """Show the loaded page under the current view (acks hidden or not, grouped or not, from whom)."""
        shown = self.shown_messages()
        per_person: dict[str, int] = {}
        for m in shown:
            per_person[sender_name(m)] = per_person.get(sender_name(m), 0) + 1
        rows = []
        previous: str | None = None
        for m in shown:
            name = sender_name(m)
            who = name
            if self.grouped:
                # The name heads its group with the number of messages; the group's other rows leave it out.
                who = f"{name} ({per_person[name]})" if name != previous else ""
                previous = name
            cells = {
                "received": self.local(m.received_at),
                "from": who,
                "type": m.type,
                "text": m.text or "",
                "announcement": str(m.announcement_id) if m.announcement_id is not None else "",
                "answered": "✓" if m.answered else "",
            }
            rows.append((str(m.id), cells))
        self.table.show(rows)
        view = ["acknowledgements hidden" if self.hide_acks else "acknowledgements shown"]
        if self.grouped:
            view.append(f"grouped by employee ({len(per_person)})")
        self.view_label.update(" · ".join(view))
        position = self.pager.describe(noun="messages")
        if position and self.hide_acks:
            position += " · acknowledgements hidden (h shows them)"
        self.position_label.update(position)
        self.empty_label.update(self.empty_text())
        self.empty_label.display = not rows

    def empty_text(self) -> str:
        """Why nothing is shown, and what to do about it."""
        needle = self.from_input.value.strip()
        if needle:
            return f"No message from anyone named like “{needle}” here. Empty the from box (f) to see everyone's."
        if self.pager.page > 0:
            return "No more messages. Press [ for the previous page."
        if self.hide_acks:
            return "No messages from employees but acknowledgements, if any. Press h to show those."
        return "No messages from employees yet."

    @on(Input.Changed, "#inbox-from")
    def _from_changed(self) -> None:
        self.redraw()

    def action_toggle_acks(self) -> None:
        """Hide or show acknowledgements (asked of the server: a different list, so back to its first page)."""
        self.hide_acks = not self.hide_acks
        self.pager.reset()
        self.redraw()
        self.reload()

    @on(DataTable.RowSelected, "#inbox")
    def _open_conversation(self, event: DataTable.RowSelected) -> None:
        event.stop()
        message = next((m for m in self.messages if str(m.id) == event.row_key.value), None)
        if message is None:
            return
        if message.employee_id is None:
            self.notify("This number is not an employee's: there is no conversation to open.", title="Conversation")
            return
        self.post_message(ConversationRequested(message.employee_id, sender_name(message)))

    def action_toggle_group(self) -> None:
        """Group the messages by employee, or back to newest first."""
        self.grouped = not self.grouped
        self.redraw()

    def action_from_filter(self) -> None:
        """Focus the from box."""
        self.from_input.focus()

    def action_reload(self) -> None:
        """Reload now."""
        self.reload()

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Hide or show acknowledgements", "Quick-reply taps and 'Got it' replies (h)", self.action_toggle_acks
        )
        yield SystemCommand(
            "Group by employee", "Each employee's messages together, or newest first (g)", self.action_toggle_group
        )
        yield SystemCommand(
            "Messages from…", "Only messages from employees whose name has this text (f)", self.action_from_filter
        )
        yield from self.page_commands("Older messages (])", "Newer messages ([)")
