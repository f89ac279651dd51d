"""One employee's conversation with the employer: their messages, our announcements and replies; reply in the window.

WhatsApp lets a business send free-form text only within 24 hours of the employee's last message (the
customer-service window). The screen says whether the window is open and until when, on the employer's clock;
outside it the API refuses the reply (409) and the operator's text is kept.
"""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Label, Static

from bot import contracts
from console.api import ApiError, ApiUnreachable
from console.clock import zone_label
from console.messages import ConversationLoaded
from console.screens.base import RefreshingScreen, Session
from console.widgets import ConnectionIndicator, SenderIndicator
from console.widgets.header import ConsoleHeader
from console.widgets.table import Column, FittedTable

COLUMNS = (
    Column("at", "at", 16),
    Column("who", "", 16, flex=True, min_width=10),
    Column("text", "text", flex=True, min_width=20),
    Column("status", "status", 9),
)
# The newest this many messages: a conversation that long is scrolled, not paged.
SHOWN = 200


def who(item: contracts.ConversationItem, name: str) -> str:
    """'← Thandi' for theirs; '→ announcement #3' or '→ reply' for ours (the arrow says which way it went)."""
    if item.direction == "in":
        return f"← {name}"
    if item.kind == "announcement" and item.announcement_id is not None:
        return f"→ announcement #{item.announcement_id}"
    return f"→ {item.kind}"


class ConversationScreen(RefreshingScreen):
    """The conversation with one employee, oldest first, refreshed; a reply box at the bottom."""

    REFRESH_SECONDS = 5.0
    AUTO_FOCUS = "#reply"
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "back", "Back"),
        # priority: the reply box has the focus and would otherwise take the key.
        Binding("ctrl+s", "send", "Send", priority=True),
    ]

    window_label = getters.query_one("#conversation-window", Label)
    table = getters.query_one("#conversation", FittedTable)
    empty_label = getters.query_one("#conversation-empty", Label)
    reply_input = getters.query_one("#reply", Input)
    reply_status = getters.query_one("#reply-status", Label)

    def __init__(self, session: Session, employee_id: int, name: str) -> None:
        super().__init__(session)
        self.employee_id = employee_id
        self.name_shown = name
        self.items: list[contracts.ConversationItem] = []
        self.window_open: bool | None = None
        # The row key of the newest message shown: the cursor follows a new one.
        self.newest: str | None = None
        # The reply being typed and its Idempotency-Key, kept until it is queued: the same text sent again after no
        # answer reuses the key, so a reply the server queued before the answer was lost is not queued twice (and a
        # key still in use is answered 409 "being processed", not queued again). The server drops the key of a
        # request it refused (409, 422), so reusing it then is harmless. Other text, another key.
        self.reply_key: tuple[str, str] | None = None
        self.sending = False

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield SenderIndicator()
        with Horizontal(classes="toolbar"):
            yield Label(f"Conversation with {self.name_shown}", classes="screen-title")
            yield Static(classes="spacer")
            yield ConnectionIndicator()
        yield Label("", id="conversation-window")
        yield FittedTable(COLUMNS, id="conversation")
        yield Label("", id="conversation-empty", classes="empty")
        yield Input(placeholder="reply (enter or ctrl+s sends)", id="reply")
        # Not markup: the server's words may hold "[…]".
        yield Label("", id="reply-status", markup=False)
        yield Footer(compact=True)

    def reload(self) -> None:
        self.load()

    @work(exclusive=True, group="conversation", exit_on_error=False)
    async def load(self) -> None:
        """Fetch the conversation and the state of the window."""
        conversation = await self.api.conversation(self.employee_id, limit=SHOWN)
        self.post_message(ConversationLoaded(conversation))

    @on(ConversationLoaded)
    def _loaded(self, event: ConversationLoaded) -> None:
        conversation = event.conversation
        self.items = list(conversation.items)
        self.window_open = conversation.window_open
        self.window_label.update(self.window_text(conversation))
        self.window_label.set_class(not conversation.window_open, "closed")
        self.redraw()

    def window_text(self, conversation: contracts.Conversation) -> str:
        """Whether a free-form reply can be sent, and until when (employer's clock)."""
        closes = conversation.window_closes_at
        if conversation.window_open and closes is not None:
            when = f"{closes.astimezone(ZoneInfo(self.session.timezone)):%Y-%m-%d %H:%M}"
            return f"Window open until {when} {zone_label(self.session.timezone, closes)}: you can reply."
        if conversation.window_open:
            return "Window open: you can reply."
        return (
            f"Window closed: {self.name_shown} has not written in the last 24 hours, so WhatsApp takes no free-form "
            "reply; send a template announcement instead."
        )

    def redraw(self) -> None:
        """Show the items, oldest first, with the cursor on the newest when a new one arrived."""
        rows = [
            (
                f"{item.direction}-{item.kind}-{item.id}",
                {
                    "at": self.local(item.at),
                    "who": who(item, self.name_shown),
                    "text": item.text or f"({item.type or 'no text'})",
                    "status": item.status or "",
                },
            )
            for item in self.items
        ]
        self.table.show(rows)
        newest = rows[-1][0] if rows else None
        if newest is not None and newest != self.newest:
            # The newest message is the one to read: follow it down as messages arrive, as a chat does.
            self.table.move_cursor(row=self.table.row_count - 1, animate=False)
        self.newest = newest
        self.empty_label.update("No messages with this employee yet.")
        self.empty_label.display = not rows

    # --- replying ---------------------------------------------------------------------------------------

    @on(Input.Submitted, "#reply")
    def action_send(self) -> None:
        """Send the typed reply (one request in flight; the same text retried keeps its key)."""
        text = self.reply_input.value.strip()
        if self.sending or not text:
            return
        if self.reply_key is None or self.reply_key[0] != text:
            self.reply_key = (text, str(uuid.uuid4()))
        self.sending = True
        self.reply_status.update("Sending…")
        self.send(text, self.reply_key[1])

    @work(exclusive=True, group="conversation-send", exit_on_error=False)
    async def send(self, text: str, key: str) -> None:
        """POST the reply; what went wrong is said on the line under the reply box, and the text stays."""
        try:
            reply = await self.api.send_message(self.employee_id, text, idempotency_key=key)
        except ApiUnreachable as exc:
            self.reply_status.update(f"Not sent: {exc}. Your text is kept; send again: it will not go twice.")
            raise
        except ApiError as exc:
            # 409: outside the 24-hour window (the server's words say so and what to do), or erased.
            fields = "; ".join(f"{f}: {m}" for f, m in exc.field_errors.items())
            reason = (fields or exc.detail).rstrip(". ")
            self.reply_status.update(f"Not sent ({exc.status}): {reason}. Your text is kept.")
            return
        finally:
            self.sending = False
        self.reply_key = None
        if self.reply_input.value.strip() == text:
            self.reply_input.value = ""
        self.reply_status.update(f"Reply queued ({reply.status}); its status follows here.")
        if all(i.id != reply.id or i.direction != "out" for i in self.items):
            self.items.append(reply)
        self.redraw()
        self.reload()

    def action_back(self) -> None:
        """Back to the inbox."""
        self.dismiss()
