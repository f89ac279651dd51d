"""The compose modal: write an announcement (text, or an approved template with its parameters), pick its audience
and send time, see who it reaches and what they get, submit once.

Sending to everyone, or at a time already past (which the API takes as "now"), is asked about first. A template's
header file is uploaded (POST /media) when the operator sends, once per file per compose.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Select,
    SelectionList,
    Static,
    TextArea,
)
from textual.widgets.option_list import Option

from bot import contracts
from console.api import ApiError, ApiUnreachable, count_audience
from console.clock import zone_label
from console.messages import AudienceCounted, EmployeesFound, TemplatesLoaded
from console.screens.base import ApiScreen, Session
from console.screens.confirm import ConfirmScreen
from console.templates import group_templates, human_size, template_error_target
from console.widgets import ConnectionIndicator
from console.widgets.template_fields import TemplateDraft, TemplateFields

TIME_FORMAT = "%Y-%m-%d %H:%M"
ERROR_TARGETS = ("message", "send_time", "audience")
# Employees offered per search: enough to find someone by part of a name, few enough to fit the dialog.
MATCHES_SHOWN = 8


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


def highlight_first(options: OptionList) -> None:
    """Highlight the first option if none is: Textual leaves a filled list without one, so Space and Enter would
    do nothing until an arrow key is pressed."""
    if options.option_count and options.highlighted is None:
        options.highlighted = 0


def employee_option(e: contracts.Employee, chosen: bool) -> Option:
    tags = f" · {', '.join(e.tags)}" if e.tags else ""
    mark = "✓ " if chosen else "+ "
    opted_out = " · opted out" if e.opted_out else ""
    return Option(f"{mark}{e.name} · {e.phone}{tags}{opted_out}", id=str(e.id))


def error_target(field: str) -> str:
    """Which form field an API error names: 'audience.tags[0]' → 'audience', 'body.message' → 'message',
    'template.parameters[1]' → 'param-2' (see console.templates.template_error_target)."""
    template_target = template_error_target(field)
    if template_target is not None:
        return template_target
    for target in ERROR_TARGETS:
        if target in field:
            return target
    return "general"


@dataclass(frozen=True)
class Content:
    """What is sent: a text `message`, or a `template` as filled in (exactly one of them)."""

    message: str | None = None
    template: TemplateDraft | None = None


# ApiScreen comes first so that its __init__ takes the session; ModalScreen still makes this a modal (its own
# bindings only, the screen underneath shown dimmed). Textual inherits DEFAULT_CSS along the first base only,
# so app.tcss restates ModalScreen's dimmed background for ComposeScreen.
class ComposeScreen(ApiScreen[contracts.Announcement | None], ModalScreen[contracts.Announcement | None]):
    """A new announcement; one Idempotency-Key per modal, so retries and double submits create one."""

    BINDINGS = [  # noqa: RUF012
        Binding("ctrl+s", "submit", "Send", priority=True),
        Binding("escape", "close", "Close"),
        Binding("ctrl+t", "toggle_content", "Text/Template"),
        Binding("ctrl+r", "sync_templates", "Sync templates"),
        # Priority, so that focus moves when the app reads the key, in step with the keys around it: otherwise keys
        # typed right after tab (a fast typist on a busy machine, a paste of several fields) are already on their
        # way to the field being left and land there.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    content_radio = getters.query_one("#content-kind", RadioSet)
    text_part = getters.query_one("#text-part", Vertical)
    template_fields = getters.query_one("#template-part", TemplateFields)
    preview_box = getters.query_one("#preview", Static)
    message_area = getters.query_one("#message", TextArea)
    message_count = getters.query_one("#message-count", Label)
    audience_radio = getters.query_one("#audience-kind", RadioSet)
    tag_list = getters.query_one("#tags", SelectionList)
    people = getters.query_one("#people", Vertical)
    people_search = getters.query_one("#people-search", Input)
    people_matches = getters.query_one("#people-matches", OptionList)
    people_chosen = getters.query_one("#people-chosen", OptionList)
    send_time_input = getters.query_one("#send-time", Input)
    recipients_label = getters.query_one("#recipients", Label)
    submit_button = getters.query_one("#submit", Button)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        # Fixed when the modal opens and reused by every submit of this compose: the server answers a repeat
        # with the announcement it already created instead of creating a second one.
        self.idempotency_key = str(uuid.uuid4())
        self.submitting = False
        # Employees picked by name: id → name, in the order picked (ids are what the API is sent).
        self.chosen: dict[int, str] = {}
        self.found: list[contracts.Employee] = []
        # The last recipient count and the audience it is for (None: not counted yet, or the API is down).
        self.counted: tuple[contracts.Audience, int] | None = None
        # What the operator already said yes to (audience, send time): a retry after a failure is not asked again.
        self.confirmed: tuple[contracts.Audience, datetime | None] | None = None
        # Header files uploaded by this compose, by (path, size, mtime): a retry after a lost answer sends the same
        # media_id, so the body matches the first try and the Idempotency-Key still finds that announcement.
        self.uploads: dict[tuple[str, int, int], contracts.Media] = {}
        self.templates_requested = False

    @property
    def timezone(self) -> str:
        return self.session.timezone

    def compose(self) -> ComposeResult:
        # The recipients, the error line and the buttons sit outside the scrolling fields so that they stay on
        # screen at 80×24: a failed send must be seen, and who it reaches must be seen before sending.
        with Vertical(id="compose-dialog"):
            with Horizontal(id="compose-head"):
                yield Label("New announcement", id="compose-title")
                yield Static(classes="spacer")
                # The app's own indicator is behind this dialog.
                yield ConnectionIndicator()
            with VerticalScroll(id="compose-fields"):
                with RadioSet(id="content-kind"):
                    yield RadioButton("text", id="content-text", value=True)
                    yield RadioButton("template (reaches everyone, also outside 24 h)", id="content-template")
                with Vertical(id="text-part"):
                    yield TextArea(id="message", soft_wrap=True, show_line_numbers=False)
                    with Horizontal(classes="field-foot"):
                        yield Label("", id="message-error", classes="field-error")
                        yield Label(f"0/{contracts.MAX_MESSAGE_LENGTH}", id="message-count")
                yield TemplateFields(id="template-part")
                yield Label("Preview: what employees get", classes="form-label")
                yield Static("", id="preview", markup=False)
                yield Label("Audience", classes="field-label")
                with RadioSet(id="audience-kind"):
                    yield RadioButton("everyone", id="kind-all", value=True)
                    yield RadioButton("by tag", id="kind-tags")
                    yield RadioButton("by name", id="kind-ids")
                yield SelectionList[str](id="tags")
                with Vertical(id="people"):
                    yield Input(
                        placeholder="type part of a name or phone; enter adds the first match", id="people-search"
                    )
                    yield OptionList(id="people-matches")
                    yield Label("Chosen (enter on one removes it):", id="people-chosen-label")
                    yield OptionList(id="people-chosen")
                yield Label("", id="audience-error", classes="field-error")
                yield Label(f"Send time ({self.timezone})", classes="field-label")
                yield Input(placeholder="now, or YYYY-MM-DD HH:MM", id="send-time")
                yield Label("", id="send_time-error", classes="field-error")
            with Vertical(id="compose-bottom"):
                yield Label("Recipients: …", id="recipients")
                yield Label("", id="general-error", classes="field-error")
                with Horizontal(id="compose-buttons"):
                    yield Button("Send (ctrl+s)", variant="success", id="submit")
                    yield Button("Close (esc)", id="close")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.tag_list.display = False
        self.people.display = False
        self.template_fields.display = False
        self.message_area.focus()
        self.load_tags()
        self._audience_changed()
        self.update_preview()

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
            if not self.chosen:
                raise FormError("audience", "find and add at least one employee")
            return contracts.Audience(employee_ids=list(self.chosen))
        return contracts.Audience(all=True)

    def error_label(self, target: str) -> Label:
        """The error line of a field (in ERROR_TARGETS, or a template field's), or of the whole form ('general')."""
        return self.query_one(f"#{target}-error", Label)

    def show_errors(self, errors: dict[str, str]) -> None:
        """Put each message next to its field; clear the others. A message for a field not on screen (a
        parameter the chosen template does not have, text errors while composing a template) goes to the
        general line, so nothing the server said is lost."""
        shown = {(label.id or "").removesuffix("-error") for label in self.query(".template-field-error")}
        shown.update(("message", "general") if self.content_kind == "text" else ("general",))
        shown.update(("send_time", "audience"))
        placed = {k: v for k, v in errors.items() if k in shown}
        stray = [f"{k}: {v}" for k, v in errors.items() if k not in shown]
        if stray:
            placed["general"] = "; ".join([*([placed["general"]] if "general" in placed else []), *stray])
        for target in (*ERROR_TARGETS, "general"):
            self.error_label(target).update(placed.get(target, ""))
        for label in self.query(".template-field-error").results(Label):
            label.update(placed.get((label.id or "").removesuffix("-error"), ""))
        self.reveal_first_error(placed)

    def error_field(self, target: str) -> Widget | None:
        """The field an error target is about, if it is shown ('general' has none: it is always on screen)."""
        if target == "audience":
            kind = self.audience_kind
            field: Widget = (
                self.tag_list if kind == "tags" else self.people_search if kind == "ids" else self.audience_radio
            )
        else:
            selectors = {
                "message": "#message",
                "send_time": "#send-time",
                "template": "#template",
                "header": "#header-value",
            }
            selector = selectors.get(target) or (f"#{target}" if target.startswith("param-") else None)
            found = self.query(selector) if selector is not None else None
            if not found:
                return None
            field = found.first()
        return field if all(node.display for node in field.ancestors_with_self) else None

    def reveal_first_error(self, errors: dict[str, str]) -> None:
        """Focus the first field (in form order) with an error and scroll its error line into view: at 80x24 most
        of the form is scrolled away, and a send that shows nothing looks like a send that got lost."""
        params = [i.id for i in self.query(".template-param") if i.id is not None]
        order = ["message", "template", "header", *params, "audience", "send_time"]
        for target in order:
            field = self.error_field(target) if target in errors else None
            if field is not None:
                # Scrolled here rather than by focus(), which animates and only when the field is out of view: the
                # error line under the field must come into view as well.
                field.focus(scroll_visible=False)
                self.call_after_refresh(self._scroll_into_view, field, self.error_label(target))
                return

    def _scroll_into_view(self, field: Widget, error: Label) -> None:
        field.scroll_visible(animate=False)
        # Only once that scroll is laid out: a second scroll now would start from the old positions and undo it.
        self.call_after_refresh(error.scroll_visible, animate=False)

    @on(TextArea.Changed, "#message")
    def _message_changed(self) -> None:
        length = len(self.message_area.text.strip())
        self.message_count.update(f"{length}/{contracts.MAX_MESSAGE_LENGTH}")
        self.message_count.set_class(length > contracts.MAX_MESSAGE_LENGTH, "over")
        self.update_preview()

    # --- text or template -------------------------------------------------------------------------------

    @property
    def content_kind(self) -> str:
        """'text' or 'template'."""
        pressed = self.content_radio.pressed_button
        return "template" if pressed is not None and pressed.id == "content-template" else "text"

    def update_preview(self) -> None:
        """Show what employees will get, as typed so far."""
        if self.content_kind == "template":
            self.preview_box.update(self.template_fields.preview())
        else:
            self.preview_box.update(self.message_area.text.strip() or "(write the message)")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Syncing is about templates: offered in the footer only while composing one.
        if action == "sync_templates":
            return self.content_kind == "template"
        return True

    @on(RadioSet.Changed, "#content-kind")
    def _content_kind_changed(self) -> None:
        template = self.content_kind == "template"
        self.text_part.display = not template
        self.template_fields.display = template
        if template and not self.templates_requested:
            # Loaded when first wanted: a text-only operator never waits for (or sees errors of) the catalogue.
            self.templates_requested = True
            self.load_templates(sync=False)
        self.show_errors({})
        self.update_preview()
        self.refresh_bindings()

    def action_toggle_content(self) -> None:
        """Switch between a text message and a template."""
        template = self.content_kind == "text"
        self.query_one("#content-template" if template else "#content-text", RadioButton).value = True
        # The field that was focused may just have been hidden: go to where the operator continues.
        self.call_after_refresh((self.template_fields.select if template else self.message_area).focus)

    @on(Button.Pressed, "#sync-templates")
    def action_sync_templates(self) -> None:
        """Read the catalogue from WhatsApp now (after editing templates in WhatsApp Manager), then list it."""
        self.templates_requested = True
        self.load_templates(sync=True)

    @work(exclusive=True, group="compose-templates", exit_on_error=False)
    async def load_templates(self, *, sync: bool) -> None:
        """GET /templates (after POST /templates/sync when asked); say here if WhatsApp or the API failed."""
        status = self.template_fields.status
        synced: int | None = None
        try:
            if sync:
                status.update("Templates: syncing from WhatsApp…")
                synced = (await self.api.sync_templates()).synced
            else:
                status.update("Templates: loading…")
            page = await self.api.list_templates()
        except ApiUnreachable:
            status.update("Templates: not loaded (the API is unreachable); try Sync templates again")
            raise
        except ApiError as exc:
            verb = "not synced" if sync else "not loaded"
            status.update(f"Templates: {verb}: {exc.detail} ({exc.status})")
            raise
        self.post_message(TemplatesLoaded(page.items, synced))

    @on(TemplatesLoaded)
    def _templates_loaded(self, event: TemplatesLoaded) -> None:
        choices = group_templates(event.templates)
        self.template_fields.offer(choices)
        n = len(choices)
        text = (
            f"{n} template{'s' if n != 1 else ''}" if n else "no approved templates (approve one in WhatsApp Manager)"
        )
        if event.synced is not None:
            text += f" (synced {event.synced} translation{'s' if event.synced != 1 else ''})"
        self.template_fields.status.update(f"Templates: {text}")

    @on(Select.Changed, "#template")
    async def _template_chosen(self, event: Select.Changed) -> None:
        name = event.value if isinstance(event.value, str) else None
        await self.template_fields.choose(name)
        self.show_errors({})
        self.update_preview()

    @on(Input.Changed, ".template-param")
    @on(Input.Changed, "#header-value")
    def _template_value_changed(self) -> None:
        self.template_fields.describe_header()
        self.update_preview()

    @on(RadioSet.Changed, "#audience-kind")
    @on(SelectionList.SelectedChanged, "#tags")
    def _audience_changed(self) -> None:
        kind = self.audience_kind
        self.tag_list.display = kind == "tags"
        self.people.display = kind == "ids"
        try:
            audience = self.read_audience()
        except FormError as exc:
            self.counted = None
            self.recipients_label.update(f"Recipients: — ({exc.message})")
            return
        self.count_recipients(audience)

    @work(exclusive=True, group="compose-audience", exit_on_error=False)
    async def count_recipients(self, audience: contracts.Audience) -> None:
        """Preview how many employees the audience reaches."""
        try:
            count = await count_audience(self.api, audience)
        except ApiUnreachable:
            self.recipients_label.update("Recipients: not counted (the API is unreachable)")
            raise
        self.post_message(AudienceCounted(count, audience))

    @on(AudienceCounted)
    def _show_count(self, event: AudienceCounted) -> None:
        if event.audience is not None:
            self.counted = (event.audience, event.count)
        noun = "employee" if event.count == 1 else "employees"
        everyone = "everyone: " if event.audience is not None and event.audience.all else ""
        self.recipients_label.update(f"Recipients: {everyone}{event.count:,} {noun} (opted-out excluded)")

    def audience_size(self, audience: contracts.Audience) -> int | None:
        """The last count of exactly this audience, if there is one."""
        if self.counted is not None and self.counted[0] == audience:
            return self.counted[1]
        return None

    @work(exclusive=True, group="compose-tags", exit_on_error=False)
    async def load_tags(self) -> None:
        """Offer every tag in use as a choice."""
        page = await self.api.list_employees(limit=500)
        tags = sorted({tag for e in page.items for tag in e.tags})
        self.tag_list.add_options([(t, t) for t in tags])
        highlight_first(self.tag_list)

    # --- employees by name --------------------------------------------------------------------------------

    @on(Input.Changed, "#people-search")
    def _search_people(self, event: Input.Changed) -> None:
        q = event.value.strip()
        if q:
            self.find_people(q)
        else:
            self.found = []
            self.people_matches.clear_options()

    @work(exclusive=True, group="compose-search", exit_on_error=False)
    async def find_people(self, q: str) -> None:
        """Search-as-you-type: the employees whose name or phone matches `q` (GET /employees?q=)."""
        page = await self.api.list_employees(q=q, limit=MATCHES_SHOWN)
        self.post_message(EmployeesFound(q, page.items))

    @on(EmployeesFound)
    def _found(self, event: EmployeesFound) -> None:
        if event.q != self.people_search.value.strip():
            return  # the operator typed on since
        self.found = event.employees
        self._draw_matches()

    def _draw_matches(self) -> None:
        matches = self.people_matches
        highlighted = matches.highlighted
        matches.set_options([employee_option(e, e.id in self.chosen) for e in self.found])
        if highlighted is not None and matches.option_count:
            matches.highlighted = min(highlighted, matches.option_count - 1)
        highlight_first(matches)

    def _draw_chosen(self) -> None:
        chosen = self.people_chosen
        highlighted = chosen.highlighted
        chosen.set_options([Option(f"− {name}", id=str(i)) for i, name in self.chosen.items()])
        if highlighted is not None and chosen.option_count:
            chosen.highlighted = min(highlighted, chosen.option_count - 1)
        highlight_first(chosen)
        self._draw_matches()
        self._audience_changed()

    def choose(self, employee: contracts.Employee) -> None:
        """Add an employee to the audience (or remove one already in it: the match list toggles)."""
        if employee.id in self.chosen:
            del self.chosen[employee.id]
        else:
            self.chosen[employee.id] = employee.name
        self._draw_chosen()

    @on(Input.Submitted, "#people-search")
    def _add_first_match(self) -> None:
        matches = self.people_matches
        if self.found:
            index = matches.highlighted if matches.highlighted is not None else 0
            self.choose(self.found[index])

    @on(OptionList.OptionSelected, "#people-matches")
    def _match_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.choose(self.found[event.option_index])

    @on(OptionList.OptionSelected, "#people-chosen")
    def _chosen_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.chosen.pop(int(event.option.id), None)
            self._draw_chosen()

    # --- submit ---------------------------------------------------------------------------------------

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        """Validate and send, once the focused field has taken the keys typed before ctrl+s."""
        # ctrl+s is a priority binding: the app runs it as soon as it reads it, while the keys typed just before it
        # may still wait in the focused field's queue. Read the form only after them, or the last word typed (or
        # all of it) is missing from the check and from what is sent.
        focused = self.focused
        if focused is not None:
            focused.call_later(self.submit_form)
        else:
            self.submit_form()

    def submit_form(self) -> None:
        """Validate, ask when it goes to everyone or at a past time, then create it (one request in flight)."""
        if self.submitting:
            return
        errors: dict[str, str] = {}
        content = self.read_content(errors)
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
        if errors or audience is None or content is None:
            return
        question = self.confirmation(audience, send_time)
        if question is None or self.confirmed == (audience, send_time):
            self.send(content, send_time, audience)
            return
        title, consequence = question

        def answered(yes: bool | None) -> None:
            if yes and audience is not None and content is not None:
                self.confirmed = (audience, send_time)
                self.send(content, send_time, audience)
            elif send_time is not None and send_time <= self.now():
                self.send_time_input.focus()

        self.app.push_screen(ConfirmScreen(title, consequence, "Send"), answered)

    def read_content(self, errors: dict[str, str]) -> Content | None:
        """The text or the template as filled in; each problem goes in `errors` under its field."""
        if self.content_kind == "template":
            draft = self.template_fields.read(errors)
            return Content(template=draft) if draft is not None else None
        message = self.message_area.text.strip()
        if not message:
            errors["message"] = "write a message"
        elif len(message) > contracts.MAX_MESSAGE_LENGTH:
            errors["message"] = f"at most {contracts.MAX_MESSAGE_LENGTH} characters"
        return Content(message=message)

    def confirmation(self, audience: contracts.Audience, send_time: datetime | None) -> tuple[str, str] | None:
        """(title, consequence) to ask before sending, or None when nothing needs a second look."""
        past = send_time is not None and send_time <= self.now()
        if not past and not audience.all:
            return None
        size = self.audience_size(audience)
        if audience.all:
            who = f"everyone: {size:,} employee{'s' if size != 1 else ''}" if size is not None else "every employee"
        else:
            who = f"{size:,} employee{'s' if size != 1 else ''}" if size is not None else "the chosen audience"
        if past and send_time is not None:
            return (
                "The send time is in the past",
                f"{self.wall_clock(send_time)} has passed (a mistyped date?), so this would go out at once, to "
                f"{who}. Send it now?",
            )
        when = "now" if send_time is None else f"at {self.wall_clock(send_time)}"
        return "Send to everyone?", f"This goes to {who} (opted-out excluded), {when}."

    def wall_clock(self, when: datetime) -> str:
        """'2026-12-01 09:00 SAST': as the operator typed it, with the zone."""
        return f"{when.astimezone(ZoneInfo(self.timezone)):{TIME_FORMAT}} {zone_label(self.timezone, when)}"

    def send(self, content: Content, send_time: datetime | None, audience: contracts.Audience) -> None:
        self.submitting = True
        self.submit_button.disabled = True
        self.error_label("general").update("Sending…")
        self.submit(content, send_time, audience)

    async def template_use(self, draft: TemplateDraft) -> contracts.TemplateUse | None:
        """The template as the API takes it, its header file uploaded first (None: the upload failed, and the
        header's error line says why)."""
        header: contracts.TemplateHeader | None = None
        if draft.link is not None:
            header = contracts.TemplateHeader(link=draft.link)
        elif draft.text is not None:
            header = contracts.TemplateHeader(text=draft.text)
        elif draft.file is not None:
            media = await self.upload(draft.file)
            if media is None:
                return None
            # A document's name is what the employee sees on it; images and videos take none.
            filename = draft.file.name if draft.header_kind == "document" else None
            header = contracts.TemplateHeader(media_id=media.media_id, filename=filename)
        return contracts.TemplateUse(name=draft.name, parameters=draft.parameters, header=header)

    async def upload(self, path: Path) -> contracts.Media | None:
        """POST /media with the file (once per file per compose); its type and size, or the error, under the
        header field."""
        info = self.template_fields.header_info
        try:
            stat = await asyncio.to_thread(path.stat)
            key = (str(await asyncio.to_thread(path.resolve)), stat.st_size, stat.st_mtime_ns)
            if key in self.uploads:
                return self.uploads[key]
            info.update(f"uploading {path.name} ({human_size(stat.st_size)})…")
            # Off the event loop: a document may be 100 MB.
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            info.update("")
            self.show_errors({"header": f"cannot read {path}: {exc.strerror or exc}"})
            return None
        try:
            media = await self.api.upload_media(path.name, content)
        except ApiError as exc:
            # 413 too big, 415 not a kind WhatsApp takes, 502 WhatsApp refused: the operator picks another file.
            info.update("")
            self.show_errors({"header": f"not uploaded: {exc.detail} ({exc.status})"})
            return None
        self.uploads[key] = media
        info.update(f"uploaded {path.name}: {media.mime_type} · {human_size(media.bytes)} (media id {media.media_id})")
        return media

    @work(exclusive=True, group="compose-submit", exit_on_error=False)
    async def submit(self, content: Content, send_time: datetime | None, audience: contracts.Audience | None) -> None:
        """Upload a header file if there is one, then POST the announcement with this compose's Idempotency-Key;
        say here, in the dialog, if it failed."""
        try:
            template: contracts.TemplateUse | None = None
            if content.template is not None:
                template = await self.template_use(content.template)
                if template is None:
                    self.error_label("general").update("Not sent: the header file was not uploaded.")
                    return
            created = await self.api.create_announcement(
                content.message,
                send_time=send_time,
                audience=audience,
                idempotency_key=self.idempotency_key,
                template=template,
            )
        except ApiUnreachable as exc:
            # Same key on the retry: if the server did store it before the answer was lost, it is not made twice.
            self.show_errors({"general": f"Not sent: {exc}. Your text is kept; try again (ctrl+s)."})
            raise
        except ApiError as exc:
            if exc.status == 422 and exc.field_errors:
                errors: dict[str, str] = {}
                for field, text in exc.field_errors.items():
                    errors.setdefault(error_target(field), text)
                self.show_errors(errors)
                return
            self.show_errors({"general": f"Not sent: {exc.title} ({exc.status}): {exc.detail}"})
            raise
        finally:
            self.submitting = False
            self.submit_button.disabled = False
        self.dismiss(created)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        """Close without sending."""
        self.dismiss(None)
