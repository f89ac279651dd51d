"""The template half of the compose form: which template, its header (a file, a link or text), one input per body
parameter, each with its error line.

It holds no API calls: the compose screen loads the templates, uploads the file and sends (its workers report to
the app); this widget shows a choice and reads what the operator typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import getters
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select

from console.templates import MAX_PARAMETER_LENGTH, MEDIA_HEADERS, TemplateChoice, flatten, human_size

HEADER_PROMPTS = {
    "image": "a JPEG/PNG file to upload (≤ 5 MB), or an https:// link",
    "video": "an MP4/3GPP file to upload (≤ 16 MB), or an https:// link",
    "document": "a PDF, Office or text file to upload (≤ 100 MB), or an https:// link",
    "text": "the header's text",
}


@dataclass(frozen=True)
class TemplateDraft:
    """The template as filled in: its body parameters and header (a link, a local file still to upload, text)."""

    name: str
    header_kind: str  # none | text | image | document | video
    parameters: list[str]
    link: str | None = None
    file: Path | None = None
    text: str | None = None


class TemplateFields(Vertical):
    """Template choice, header and parameters; `read()` checks them as the server would before anything is sent."""

    select = getters.query_one("#template", Select)
    status = getters.query_one("#templates-status", Label)
    header_part = getters.query_one("#template-header", Vertical)
    header_label = getters.query_one("#header-label", Label)
    header_input = getters.query_one("#header-value", Input)
    header_info = getters.query_one("#header-info", Label)
    params = getters.query_one("#template-params", Vertical)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.choices: dict[str, TemplateChoice] = {}
        self.choice: TemplateChoice | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="template-row"):
            yield Select[str]([], prompt="choose an approved template", id="template")
            yield Button("Sync (ctrl+r)", id="sync-templates")
        yield Label("Templates: not loaded yet", id="templates-status", markup=False)
        yield Label("", id="template-error", classes="field-error template-field-error")
        with Vertical(id="template-header"):
            yield Label("", id="header-label", classes="form-label", markup=False)
            yield Input(id="header-value")
            yield Label("", id="header-info", markup=False)
            yield Label("", id="header-error", classes="field-error template-field-error")
        yield Vertical(id="template-params")

    def on_mount(self) -> None:
        self.header_part.display = False

    def offer(self, choices: list[TemplateChoice]) -> None:
        """Offer these templates; the one chosen stays chosen if it still exists."""
        current = self.choice.name if self.choice is not None else None
        self.choices = {c.name: c for c in choices}
        self.select.set_options([(c.label(), c.name) for c in choices])
        if current in self.choices:
            self.select.value = current

    async def choose(self, name: str | None) -> None:
        """Show the header and parameter inputs of template `name` (None: no template chosen)."""
        self.choice = self.choices.get(name) if name is not None else None
        await self.params.remove_children()
        choice = self.choice
        kind = choice.header if choice is not None else "none"
        needs_header = choice is not None and (kind in MEDIA_HEADERS or choice.header_has_parameter)
        self.header_part.display = needs_header
        self.header_input.value = ""
        self.header_info.update("")
        if choice is not None and needs_header:
            line = choice.header_line or ""
            self.header_label.update(f"Header ({kind})" if kind in MEDIA_HEADERS else f"Header: {line}")
            self.header_input.placeholder = HEADER_PROMPTS[kind]
        if choice is None:
            return
        rows: list[Label | Input] = []
        for n in range(1, choice.body_parameters + 1):
            rows.append(
                Label(f"{{{{{n}}}}} in “{choice.placeholder_hint(n)}”", classes="form-label param-label", markup=False)
            )
            rows.append(Input(placeholder=f"value of {{{{{n}}}}}", id=f"param-{n}", classes="template-param"))
            rows.append(Label("", id=f"param-{n}-error", classes="field-error template-field-error"))
        await self.params.mount_all(rows)

    def parameter_values(self) -> list[str]:
        return [i.value for i in self.params.query(".template-param").results(Input)]

    @property
    def header_value(self) -> str:
        return self.header_input.value.strip() if self.header_part.display else ""

    def preview(self) -> str:
        """The message with the values typed so far; a media header shows the file's name or the link."""
        if self.choice is None:
            return "(choose a template)"
        shown = self.header_value
        if self.choice.header in MEDIA_HEADERS and shown and not shown.startswith(("https://", "http://")):
            shown = Path(shown).expanduser().name
        return self.choice.preview(self.parameter_values(), shown)

    def describe_header(self) -> None:
        """Say what the header input holds: a link, or the local file with its size (uploaded on send)."""
        value = self.header_value
        if self.choice is None or self.choice.header not in MEDIA_HEADERS or not value:
            self.header_info.update("")
        elif value.startswith(("https://", "http://")):
            self.header_info.update("a link: WhatsApp fetches it when sending")
        else:
            path = Path(value).expanduser()
            if path.is_file():
                self.header_info.update(f"{path.name} · {human_size(path.stat().st_size)} · uploaded when you send")
            else:
                self.header_info.update("no such file yet")

    def read(self, errors: dict[str, str]) -> TemplateDraft | None:
        """The draft, with each problem put in `errors` under its field (template, header, param-N)."""
        choice = self.choice
        if choice is None:
            errors["template"] = "choose a template (Sync templates if it is not listed)"
            return None
        parameters = self.parameter_values()
        for n, value in enumerate(parameters, start=1):
            flat = flatten(value)
            if not flat:
                errors[f"param-{n}"] = "must not be empty"
            elif len(flat) > MAX_PARAMETER_LENGTH:
                errors[f"param-{n}"] = (
                    f"is {len(flat)} characters (whitespace collapsed); WhatsApp takes at most {MAX_PARAMETER_LENGTH}"
                )
        value = self.header_value
        draft = TemplateDraft(choice.name, choice.header, parameters)
        if choice.header in MEDIA_HEADERS:
            if not value:
                errors["header"] = f"give a file to upload or an https:// link for the {choice.header}"
            elif value.startswith("https://"):
                return TemplateDraft(choice.name, choice.header, parameters, link=value)
            elif value.startswith("http://"):
                errors["header"] = "a link must be https://"
            else:
                path = Path(value).expanduser()
                if not path.is_file():
                    errors["header"] = f"no such file: {path}"
                return TemplateDraft(choice.name, choice.header, parameters, file=path)
        elif choice.header_has_parameter:
            if not flatten(value):
                errors["header"] = "write the header's text"
            return TemplateDraft(choice.name, choice.header, parameters, text=value)
        return draft
