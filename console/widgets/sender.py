"""The sender line: which WhatsApp number announcements go out from, at what rate, and whether it is held back."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from textual.reactive import reactive
from textual.widgets import Static

from bot import contracts

_CLASSES = ("sender-ok", "sender-paused", "sender-backoff")


def local_until(when: datetime, timezone: str, now: datetime | None = None) -> str:
    """`when` in the employer's timezone to the second, with the date only when it is not today there.

    Seconds, because a pause lasts a minute (the dispatcher's PAUSE_SECONDS) and a back-off often less: minutes
    would read "until 14:05" while sending is still held at 14:05:40.
    """
    tz = ZoneInfo(timezone)
    local = when.astimezone(tz)
    today = (now or datetime.now(UTC)).astimezone(tz).date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


def number(sender: contracts.Sender) -> str:
    """'own number 1000…' or 'the shared number 1000…' (Graph's phone number id: what the operator configured)."""
    return f"{'own' if sender.own else 'the shared'} number {sender.phone_number_id}"


def sender_line(sender: contracts.Sender, timezone: str, now: datetime | None = None) -> tuple[str, str]:
    """The line to show and its CSS class.

    A paused or backed-off number leads with that state and why: on a narrow terminal the end of the line is what
    gets cut, and the number matters less than the fact that nothing is being sent. A pause wins over a back-off
    (it is the longer hold, and the one that needs someone to act, e.g. replace an expired token).
    """
    if sender.paused_until is not None:
        why = f" — {sender.pause_reason}" if sender.pause_reason else ""
        until = local_until(sender.paused_until, timezone, now)
        return f"PAUSED until {until}{why} · {number(sender)}", "sender-paused"
    if sender.backoff_until is not None:
        why = f" — {sender.backoff_reason}" if sender.backoff_reason else ""
        until = local_until(sender.backoff_until, timezone, now)
        return f"backed off until {until}{why} · {number(sender)}", "sender-backoff"
    return f"From {number(sender)} · {sender.rate:g} msg/s", "sender-ok"


def sender_details(sender: contracts.Sender, timezone: str, now: datetime | None = None) -> str:
    """Everything GET /sender says, for the command palette's notice."""
    lines = [f"From {number(sender)} at {sender.rate:g} msg/s."]
    if sender.waba_id:
        lines.append(f"WhatsApp Business Account {sender.waba_id}.")
    if sender.access_token_hint:
        lines.append(f"Access token {sender.access_token_hint}.")
    if sender.paused_until is not None:
        lines.append(f"Paused until {local_until(sender.paused_until, timezone, now)}: {sender.pause_reason or '?'}.")
    if sender.backoff_until is not None:
        until = local_until(sender.backoff_until, timezone, now)
        lines.append(f"Backed off until {until}: {sender.backoff_reason or '?'}.")
    if sender.paused_until is not None or sender.backoff_until is not None:
        lines.append("Nothing is sent from this number until then; deliveries wait as pending.")
    return "\n".join(lines)


class SenderIndicator(Static):
    """One line under the header; follows the app's `sender` (None: not known yet, or a server without /sender)."""

    DEFAULT_CSS = """
    SenderIndicator { width: 100%; height: 1; padding: 0 1; background: $boost; text-wrap: nowrap;
                      text-overflow: ellipsis; }
    SenderIndicator.sender-ok { color: $text-muted; }
    SenderIndicator.sender-paused { color: $error; text-style: bold; }
    SenderIndicator.sender-backoff { color: $warning; }
    """

    sender: reactive[contracts.Sender | None] = reactive(None, layout=True, always_update=True)

    def __init__(self) -> None:
        # Reasons come from Graph and may hold "[...]": plain text, never Textual markup.
        super().__init__(markup=False)

    def on_mount(self) -> None:
        # Hidden, so taking no row, until there is something to say (and for good on a server without /sender).
        self.display = False
        if hasattr(self.app, "sender"):
            self.watch(self.app, "sender", self._follow)

    def _follow(self, sender: contracts.Sender | None) -> None:
        self.sender = sender

    def watch_sender(self, sender: contracts.Sender | None) -> None:
        """Show the line in the colour of the sender's state, or hide it."""
        self.display = sender is not None
        if sender is None:
            return
        text, cls = sender_line(sender, str(getattr(self.app, "timezone", "UTC")))
        self.remove_class(*_CLASSES)
        self.add_class(cls)
        self.update(text)
