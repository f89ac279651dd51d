"""Templates as the compose form offers them: one choice per name, the preview with the operator's values filled
in, what each placeholder is for, and which form field an API error about a template names.

Plain functions over `bot.contracts.Template` (GET /templates), no UI: the compose screen and its tests share them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot import contracts

MEDIA_HEADERS = ("image", "document", "video")
# What WhatsApp takes per parameter, after whitespace is collapsed (docs/api.md#announcements).
MAX_PARAMETER_LENGTH = 1024
# The API's preview names each placeholder as {{n}} (its own sample values); spaces inside the braces are Meta's.
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
# Characters of body text shown either side of a placeholder in its field's label.
HINT_CONTEXT = 24


def flatten(text: str) -> str:
    """A parameter as the server sends it: every run of whitespace becomes one space."""
    return " ".join(text.split())


@dataclass(frozen=True)
class TemplateChoice:
    """One template name and its approved translations; `reference` is the one the form previews."""

    name: str
    translations: tuple[contracts.Template, ...]

    @property
    def reference(self) -> contracts.Template:
        # English when there is one (the operators' language), else the first: the server sends each employee
        # their own translation, and all translations of a usable template take the same parameters.
        return next((t for t in self.translations if t.language.startswith("en")), self.translations[0])

    @property
    def languages(self) -> list[str]:
        return [t.language for t in self.translations]

    @property
    def header(self) -> str:
        return self.reference.header

    @property
    def body_parameters(self) -> int:
        return self.reference.body_parameters

    @property
    def header_line(self) -> str | None:
        """The preview's header line: '[image]', or a text header ('Notice: {{1}}'); None without a header."""
        if self.header == "none":
            return None
        first = self.reference.preview.split("\n", 1)[0]
        if self.header in MEDIA_HEADERS or first != self.reference.preview:
            return first
        return None

    @property
    def header_has_parameter(self) -> bool:
        """A text header with a variable: the form asks for its value."""
        line = self.header_line
        return self.header == "text" and line is not None and _PLACEHOLDER.search(line) is not None

    def label(self) -> str:
        """What the Select shows: 'shift_notice · af, en_US · image header · 2 parameters'."""
        parts = [self.name, ", ".join(self.languages)]
        if self.header != "none":
            parts.append(f"{self.header} header")
        parts.append(f"{self.body_parameters} parameter{'s' if self.body_parameters != 1 else ''}")
        return " · ".join(parts)

    def placeholder_hint(self, n: int) -> str:
        """The body text around {{n}}, so the operator knows what the value is for: '…team, {{1}} starts on…'."""
        placeholder = re.compile(r"\{\{\s*" + str(n) + r"\s*\}\}")
        # Within its own line: the preview's later lines are the footer and the buttons, not context.
        for line in self.body_text().split("\n"):
            match = placeholder.search(line)
            if match is not None:
                start, end = max(0, match.start() - HINT_CONTEXT), min(len(line), match.end() + HINT_CONTEXT)
                snippet = flatten(line[start:end])
                return f"{'…' if start else ''}{snippet}{'…' if end < len(line) else ''}"
        return f"{{{{{n}}}}}"

    def body_text(self) -> str:
        """The preview without its header line."""
        preview = self.reference.preview
        if self.header_line is not None:
            return preview.split("\n", 1)[1] if "\n" in preview else ""
        return preview

    def preview(self, parameters: list[str], header: str = "") -> str:
        """The message as employees will see it: the API's preview with the values typed so far filled in
        (flattened, as they are sent); a placeholder still empty stays {{n}}, so what is missing shows."""
        values = [flatten(p) for p in parameters]
        lines: list[str] = []
        if self.header_line is not None:
            if self.header in MEDIA_HEADERS:
                lines.append(f"[{self.header}: {header.strip()}]" if header.strip() else f"[{self.header}]")
            else:
                lines.append(_fill(self.header_line, [flatten(header)]))
        lines.append(_fill(self.body_text(), values))
        return "\n".join(lines)


def _fill(text: str, values: list[str]) -> str:
    def one(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return values[index] if 0 <= index < len(values) and values[index] else match.group(0)

    return _PLACEHOLDER.sub(one, text)


def group_templates(items: list[contracts.Template]) -> list[TemplateChoice]:
    """Approved translations grouped by name (one choice each), sorted by name."""
    by_name: dict[str, list[contracts.Template]] = {}
    for t in items:
        if t.status.upper() == "APPROVED":
            by_name.setdefault(t.name, []).append(t)
    return [TemplateChoice(name, tuple(sorted(ts, key=lambda t: t.language))) for name, ts in sorted(by_name.items())]


def template_error_target(field: str) -> str | None:
    """Which template field an API error names: 'template.parameters[1]' → 'param-2' (the second input),
    'template.header.link' → 'header', 'template.parameters' and 'template.name' → 'template'; None when the
    field is not about the template."""
    match = re.fullmatch(r"(?:body\.)?template\.parameters\[(\d+)\]", field)
    if match:
        return f"param-{int(match.group(1)) + 1}"
    if "template.header" in field:
        return "header"
    if "template" in field:
        return "template"
    return None


def human_size(size: int) -> str:
    """12 B, 3.4 KB, 5.0 MB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
