"""The remind dialog: how many a reminder reaches, its text and send time; POSTs on yes and explains a refusal here."""

from __future__ import annotations

from datetime import datetime

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

from bot import contracts
from console.api import ApiError, ApiUnreachable
from console.screens.base import ApiScreen, Session
from console.screens.compose import FormError, parse_send_time


def remind_question(count: int) -> str:
    """'Remind 3 employees who were reached and have not acknowledged?'"""
    noun = "employee" if count == 1 else "employees"
    return f"Remind {count:,} {noun} who were reached and have not acknowledged?"


def prefill(announcement: contracts.Announcement) -> str:
    """The reminder's text to start from: the original's after 'Reminder: '; none for a template (the server then
    sends the template again, which also reaches phones outside the 24-hour window)."""
    if announcement.template is not None:
        return ""
    return f"Reminder: {announcement.message}"


# ApiScreen first so that its __init__ takes the session (as ComposeScreen; app.tcss restates the modal look).
class RemindScreen(ApiScreen[contracts.Announcement | None], ModalScreen[contracts.Announcement | None]):
    """Ask before reminding; dismisses with the reminder created, or None on no."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+s", "submit", "Remind", priority=True),
        Binding("escape", "close", "No"),
    ]

    message_area = getters.query_one("#remind-message", TextArea)
    send_time_input = getters.query_one("#remind-send-time", Input)
    error_label = getters.query_one("#remind-error", Label)
    yes_button = getters.query_one("#remind-yes", Button)
    no_button = getters.query_one("#remind-no", Button)

    def __init__(self, session: Session, announcement: contracts.Announcement, count: int) -> None:
        super().__init__(session)
        self.announcement = announcement
        self.count = count
        # One request in flight: a second ctrl+s while the first is unanswered would make a second reminder.
        self.submitting = False

    def compose(self) -> ComposeResult:
        template = self.announcement.template
        hint = f" (empty: template {template.name} again)" if template is not None else " (empty: the original's)"
        with Vertical(id="remind-dialog"):
            yield Label(remind_question(self.count), id="remind-title")
            yield Label(f"Message{hint}", classes="field-label")
            yield TextArea(prefill(self.announcement), id="remind-message", soft_wrap=True, show_line_numbers=False)
            yield Label(f"Send time ({self.session.timezone})", classes="field-label")
            yield Input(placeholder="now, or YYYY-MM-DD HH:MM", id="remind-send-time")
            # Not markup: the server's words may hold "[…]".
            yield Label("", id="remind-error", classes="field-error", markup=False)
            with Horizontal(id="remind-buttons"):
                yield Button("Remind (ctrl+s)", variant="warning", id="remind-yes")
                yield Button("No (esc)", variant="primary", id="remind-no")

    def on_mount(self) -> None:
        # As in the confirm dialog, the safe answer has the focus: a stray Enter reminds nobody.
        self.no_button.focus()

    @on(Button.Pressed, "#remind-yes")
    def action_submit(self) -> None:
        """Check the send time, then POST the reminder (once)."""
        if self.submitting:
            return
        try:
            send_time = parse_send_time(self.send_time_input.value, self.session.timezone)
        except FormError as exc:
            self.error_label.update(f"Send time: {exc.message}")
            self.send_time_input.focus()
            return
        # An emptied text means "the server's default", not an empty reminder.
        message = self.message_area.text.strip() or None
        self.submitting = True
        self.yes_button.disabled = True
        self.error_label.update("Sending…")
        self.submit(message, send_time)

    @work(exclusive=True, group="remind-submit", exit_on_error=False)
    async def submit(self, message: str | None, send_time: datetime | None) -> None:
        """POST /announcements/{id}/remind; a refusal (409, 422) or no answer is said here, in the dialog."""
        try:
            reminder = await self.api.remind(self.announcement.id, message=message, send_time=send_time)
        except ApiUnreachable as exc:
            self.error_label.update(f"Not sent: {exc}. Check the reminders list before trying again (ctrl+s).")
            raise
        except ApiError as exc:
            if exc.field_errors:
                fields = "; ".join(f"{field}: {text}" for field, text in exc.field_errors.items())
                self.error_label.update(f"Not sent: {fields}")
            else:
                self.error_label.update(f"Not sent: {exc.detail} ({exc.status})")
            return
        finally:
            self.submitting = False
            self.yes_button.disabled = False
        self.dismiss(reminder)

    @on(Button.Pressed, "#remind-no")
    def action_close(self) -> None:
        """Remind nobody."""
        self.dismiss(None)
