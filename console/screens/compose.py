"""The compose modal: write an announcement, pick its audience and send time, see who it reaches, submit once."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, TextArea

from bot import contracts
from console.api import ApiError, count_audience
from console.messages import AudienceCounted
from console.screens.base import ApiScreen, Session

TIME_FORMAT = "%Y-%m-%d %H:%M"
ERROR_TARGETS = ("message", "send_time", "audience")


class FormError(Exception):
    """A field the operator must fix before submitting."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def parse_send_time(text: str, timezone: str) -> datetime | None:
    """'now' (or nothing) → None; 'YYYY-MM-DD HH:MM' → that wall-clock time in the employer's timezone."""
    text = text.strip()
    if not text or text.lower() == "now":
        return None
    try:
        naive = datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        raise FormError("send_time", "use YYYY-MM-DD HH:MM, or 'now'") from None
    return naive.replace(tzinfo=ZoneInfo(timezone))


def parse_ids(text: str) -> list[int]:
    """'3, 5 8' → [3, 5, 8]."""
    ids = []
    for part in text.replace(",", " ").split():
        if not part.isdigit():
            raise FormError("audience", f"employee ids are numbers, not {part!r}")
        ids.append(int(part))
    if not ids:
        raise FormError("audience", "enter at least one employee id")
    return ids


def error_target(field: str) -> str:
    """Which form field an API error names: 'audience.tags[0]' → 'audience', 'body.message' → 'message'."""
    for target in ERROR_TARGETS:
        if target in field:
            return target
    return "general"


# ApiScreen comes first so that its __init__ takes the session; ModalScreen still makes this a modal (its own
# bindings only, the screen underneath shown dimmed). Textual inherits DEFAULT_CSS along the first base only,
# so app.tcss restates ModalScreen's dimmed background for ComposeScreen.
class ComposeScreen(ApiScreen[contracts.Announcement | None], ModalScreen[contracts.Announcement | None]):
    """A new announcement; one Idempotency-Key per modal, so retries and double submits create one."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+s", "submit", "Send", priority=True),
        Binding("escape", "close", "Close"),
    ]

    message_area = getters.query_one("#message", TextArea)
    message_count = getters.query_one("#message-count", Label)
    audience_radio = getters.query_one("#audience-kind", RadioSet)
    tag_list = getters.query_one("#tags", SelectionList)
    ids_input = getters.query_one("#employee-ids", Input)
    send_time_input = getters.query_one("#send-time", Input)
    recipients_label = getters.query_one("#recipients", Label)
    submit_button = getters.query_one("#submit", Button)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        # Fixed when the modal opens and reused by every submit of this compose: the server answers a repeat
        # with the announcement it already created instead of creating a second one.
        self.idempotency_key = str(uuid.uuid4())
        self.submitting = False

    @property
    def timezone(self) -> str:
        return self.session.timezone

    def compose(self) -> ComposeResult:
        # The buttons sit outside the scrolling fields so they stay visible on an 80×24 terminal.
        with Vertical(id="compose-dialog"):
            with VerticalScroll(id="compose-fields"):
                yield Label("New announcement", id="compose-title")
                yield TextArea(id="message", soft_wrap=True, show_line_numbers=False)
                with Horizontal(classes="field-foot"):
                    yield Label("", id="message-error", classes="field-error")
                    yield Label(f"0/{contracts.MAX_MESSAGE_LENGTH}", id="message-count")
                yield Label("Audience", classes="field-label")
                with RadioSet(id="audience-kind"):
                    yield RadioButton("everyone", id="kind-all", value=True)
                    yield RadioButton("by tag", id="kind-tags")
                    yield RadioButton("by employee id", id="kind-ids")
                yield SelectionList[str](id="tags")
                yield Input(placeholder="employee ids, e.g. 3, 5, 8", id="employee-ids")
                yield Label("", id="audience-error", classes="field-error")
                yield Label(f"Send time ({self.timezone})", classes="field-label")
                yield Input(placeholder="now, or YYYY-MM-DD HH:MM", id="send-time")
                yield Label("", id="send_time-error", classes="field-error")
                yield Label("Recipients: …", id="recipients")
                yield Label("", id="general-error", classes="field-error")
            with Horizontal(id="compose-buttons"):
                yield Button("Send (ctrl+s)", variant="success", id="submit")
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.tag_list.display = False
        self.ids_input.display = False
        self.message_area.focus()
        self.load_tags()
        self._audience_changed()

    # --- form state ---------------------------------------------------------------------------------------

    @property
    def audience_kind(self) -> str:
        pressed = self.audience_radio.pressed_button
        return (pressed.id or "kind-all").removeprefix("kind-") if pressed is not None else "all"

    def read_audience(self) -> contracts.Audience:
        """The audience as chosen, or FormError."""
        kind = self.audience_kind
        if kind == "tags":
            tags = list(self.tag_list.selected)
            if not tags:
                raise FormError("audience", "pick at least one tag")
            return contracts.Audience(tags=tags)
        if kind == "ids":
            return contracts.Audience(employee_ids=parse_ids(self.ids_input.value))
        return contracts.Audience(all=True)

    def error_label(self, target: str) -> Label:
        """The error line of a field in ERROR_TARGETS, or of the whole form ('general')."""
        return self.query_one(f"#{target}-error", Label)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Put each message next to its field; clear the others."""
        for target in (*ERROR_TARGETS, "general"):
            self.error_label(target).update(errors.get(target, ""))

    @on(TextArea.Changed, "#message")
    def _message_changed(self) -> None:
        length = len(self.message_area.text.strip())
        self.message_count.update(f"{length}/{contracts.MAX_MESSAGE_LENGTH}")
        self.message_count.set_class(length > contracts.MAX_MESSAGE_LENGTH, "over")

    @on(RadioSet.Changed, "#audience-kind")
    @on(SelectionList.SelectedChanged, "#tags")
    @on(Input.Changed, "#employee-ids")
    def _audience_changed(self) -> None:
        kind = self.audience_kind
        self.tag_list.display = kind == "tags"
        self.ids_input.display = kind == "ids"
        try:
            audience = self.read_audience()
        except FormError as exc:
            self.recipients_label.update(f"Recipients: — ({exc.message})")
            return
        self.count_recipients(audience)

    @work(exclusive=True, group="compose-audience", exit_on_error=False)
    async def count_recipients(self, audience: contracts.Audience) -> None:
        """Preview how many employees the audience reaches."""
        self.post_message(AudienceCounted(await count_audience(self.api, audience)))

    @on(AudienceCounted)
    def _show_count(self, event: AudienceCounted) -> None:
        noun = "employee" if event.count == 1 else "employees"
        self.recipients_label.update(f"Recipients: {event.count} {noun} (opted-out excluded)")

    @work(exclusive=True, group="compose-tags", exit_on_error=False)
    async def load_tags(self) -> None:
        """Offer every tag in use as a choice."""
        page = await self.api.list_employees(limit=500)
        tags = sorted({tag for e in page.items for tag in e.tags})
        self.tag_list.add_options([(t, t) for t in tags])

    # --- submit ---------------------------------------------------------------------------------------

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        """Validate, then create the announcement (at most one request in flight)."""
        if self.submitting:
            return
        errors: dict[str, str] = {}
        message = self.message_area.text.strip()
        if not message:
            errors["message"] = "write a message"
        elif len(message) > contracts.MAX_MESSAGE_LENGTH:
            errors["message"] = f"at most {contracts.MAX_MESSAGE_LENGTH} characters"
        audience: contracts.Audience | None = None
        send_time: datetime | None = None
        try:
            audience = self.read_audience()
        except FormError as exc:
            errors[exc.field] = exc.message
        try:
            send_time = parse_send_time(self.send_time_input.value, self.timezone)
        except FormError as exc:
            errors[exc.field] = exc.message
        self.show_errors(errors)
        if errors:
            return
        self.submitting = True
        self.submit_button.disabled = True
        self.submit(message, send_time, audience)

    @work(exclusive=True, group="compose-submit", exit_on_error=False)
    async def submit(self, message: str, send_time: datetime | None, audience: contracts.Audience | None) -> None:
        """POST the announcement with this compose's Idempotency-Key."""
        try:
            created = await self.api.create_announcement(
                message, send_time=send_time, audience=audience, idempotency_key=self.idempotency_key
            )
        except ApiError as exc:
            if exc.status == 422 and exc.field_errors:
                errors: dict[str, str] = {}
                for field, text in exc.field_errors.items():
                    errors.setdefault(error_target(field), text)
                self.show_errors(errors)
                return
            raise
        finally:
            self.submitting = False
            self.submit_button.disabled = False
        self.dismiss(created)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close without sending."""
        self.dismiss(None)
