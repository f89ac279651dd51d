"""The simulator's message templates: what `GET /{waba_id}/message_templates` lists, and what template sends are
checked against (`template_sends.py`).

A catalogue is a JSON list of templates in the shape Graph lists them (`--templates FILE`; by default
`templates.json` beside this file, the same for every business account id). Positional placeholders only
(`{{1}}`, `{{2}}`, …): the simulator does not play named parameters. See docs/whatsapp.md#message-templates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.simulator.validation import GraphError

DEFAULT_CATALOGUE = Path(__file__).parent / "templates.json"

HEADER_FORMATS = ("TEXT", "IMAGE", "DOCUMENT", "VIDEO")
STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "PENDING_DELETION", "DELETED",
            "LIMIT_EXCEEDED", "ARCHIVED")  # fmt: skip
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE", "FLOW", "OTP", "MPM", "CATALOG", "VOICE_CALL")
NAME = re.compile(r"[a-z0-9_]{1,512}")
# Meta's template languages: `af`, `en`, `en_US`, `zh_CN`, `es_LA`, `pt_BR`, `fil`, …
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2,4})?")
TEMPLATE_ID = re.compile(r"[0-9]{1,32}")
PLACEHOLDER = re.compile(r"\{\{([^{}]*)\}\}")
# Meta's limits on a template's own texts.
MAX_BODY = 1024
MAX_HEADER_TEXT = 60
MAX_FOOTER = 60
MAX_BUTTONS = 10
MAX_BUTTON_TEXT = 25

# `GET …/message_templates`: Graph's default page size for an edge, and the most we answer in one page (ours).
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
# What `fields` may name (Meta's WhatsAppBusinessHSM fields); a known field a template lacks is left out.
KNOWN_FIELDS = frozenset({"id", "name", "language", "status", "category", "components", "parameter_format",
                          "previous_category", "sub_category", "quality_score", "rejected_reason",
                          "correct_category", "cta_url_link_tracking_opted_out", "library_template_name",
                          "message_send_ttl_seconds"})  # fmt: skip


@dataclass(frozen=True)
class Button:
    type: str  # QUICK_REPLY, URL, …
    text: str
    url: str | None = None

    @property
    def parameters(self) -> int:
        """How many parameters a send must give it: a URL button with `{{1}}` in its URL takes one."""
        return len(PLACEHOLDER.findall(self.url or ""))


@dataclass(frozen=True)
class CatalogueTemplate:
    """One translation of a template, and what checking a send of it needs."""

    name: str
    language: str
    status: str
    category: str
    id: str
    header_format: str | None  # TEXT, IMAGE, DOCUMENT, VIDEO; None without a header
    header_text: str | None
    body_text: str
    footer_text: str | None
    buttons: tuple[Button, ...]
    # As Graph lists it (with `id`, which a file may leave out). Not compared: two equal translations are equal.
    record: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def approved(self) -> bool:
        return self.status == "APPROVED"

    @property
    def header_parameters(self) -> int:
        return _placeholders(self.header_text or "")

    @property
    def body_parameters(self) -> int:
        return _placeholders(self.body_text)


def _placeholders(text: str) -> int:
    return len(set(PLACEHOLDER.findall(text)))


def _positional(text: str, where: str) -> None:
    """Placeholders must be `{{1}}` … `{{n}}`, each number from 1 to n used (as Meta requires)."""
    keys = PLACEHOLDER.findall(text)
    if any(not key.isdigit() for key in keys):
        raise ValueError(f"{where}: only positional placeholders ({{{{1}}}}, {{{{2}}}}, …) are supported")
    numbers = sorted({int(key) for key in keys})
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{where}: placeholders must be numbered {{{{1}}}} to {{{{n}}}} without gaps")


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: a non-empty text is required")
    if len(value) > limit:
        raise ValueError(f"{where}: at most {limit} characters, got {len(value)}")
    return value


def _choice(value: object, where: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value.upper() not in allowed:
        raise ValueError(f"{where}: one of {', '.join(allowed)} is required, got {value!r}")
    return value.upper()


def template_id(name: str, language: str) -> str:
    """A stable id for a file's template that has none: 15 digits of the SHA-256 of its name and language."""
    digest = hashlib.sha256(f"{name}:{language}".encode()).digest()
    return "9" + str(int.from_bytes(digest[:8], "big") % 10**14).rjust(14, "0")


def parse_template(raw: object, where: str) -> CatalogueTemplate:
    """One template as Graph lists it; ValueError (naming `where` and the field) when it is not one."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a JSON object is required")
    name, language = raw.get("name"), raw.get("language")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{where}: `name` must be lower-case letters, digits and underscores, got {name!r}")
    if not isinstance(language, str) or not LANGUAGE.fullmatch(language):
        raise ValueError(f"{where} ({name}): `language` must be a code such as en, af or en_US, got {language!r}")
    where = f"{where} ({name}/{language})"
    status = _choice(raw.get("status"), f"{where} `status`", STATUSES)
    category = _choice(raw.get("category"), f"{where} `category`", CATEGORIES)
    given_id = raw.get("id")
    if given_id is not None and (not isinstance(given_id, str) or not TEMPLATE_ID.fullmatch(given_id)):
        raise ValueError(f"{where}: `id` must be a string of digits, got {given_id!r}")
    components = raw.get("components")
    if not isinstance(components, list) or not components:
        raise ValueError(f"{where}: `components` must be a non-empty list")
    found: dict[str, dict[str, Any]] = {}
    for i, component in enumerate(components):
        kind = component.get("type") if isinstance(component, dict) else None
        if not isinstance(kind, str) or kind.upper() not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise ValueError(f"{where}: component {i} needs a `type` of HEADER, BODY, FOOTER or BUTTONS")
        if kind.upper() in found:
            raise ValueError(f"{where}: more than one {kind.upper()} component")
        assert isinstance(component, dict)
        found[kind.upper()] = component
    body = found.get("BODY")
    if body is None:
        raise ValueError(f"{where}: a BODY component is required")
    body_text = _text(body.get("text"), f"{where} BODY `text`", MAX_BODY)
    _positional(body_text, f"{where} BODY")
    header_format, header_text = None, None
    if "HEADER" in found:
        header_format = _choice(found["HEADER"].get("format"), f"{where} HEADER `format`", HEADER_FORMATS)
        if header_format == "TEXT":
            header_text = _text(found["HEADER"].get("text"), f"{where} HEADER `text`", MAX_HEADER_TEXT)
            _positional(header_text, f"{where} HEADER")
            if _placeholders(header_text) > 1:
                raise ValueError(f"{where}: a TEXT header takes at most one placeholder")
    footer = found.get("FOOTER")
    footer_text = _text(footer.get("text"), f"{where} FOOTER `text`", MAX_FOOTER) if footer is not None else None
    buttons: list[Button] = []
    if "BUTTONS" in found:
        listed = found["BUTTONS"].get("buttons")
        if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_BUTTONS:
            raise ValueError(f"{where}: BUTTONS needs a list of 1 to {MAX_BUTTONS} `buttons`")
        for j, button in enumerate(listed):
            spot = f"{where} button {j}"
            if not isinstance(button, dict):
                raise ValueError(f"{spot}: a JSON object is required")
            url = button.get("url")
            if url is not None and not isinstance(url, str):
                raise ValueError(f"{spot}: `url` must be a string")
            buttons.append(Button(_choice(button.get("type"), f"{spot} `type`", BUTTON_TYPES),
                                  _text(button.get("text"), f"{spot} `text`", MAX_BUTTON_TEXT), url))  # fmt: skip
    template_id_ = given_id or template_id(name, language)
    return CatalogueTemplate(name, language, status, category, template_id_, header_format, header_text, body_text,
                             footer_text, tuple(buttons), {**raw, "id": template_id_})  # fmt: skip


def parse_catalogue(data: object) -> tuple[CatalogueTemplate, ...]:
    """A catalogue file's content: a JSON list of templates, one per (name, language)."""
    if not isinstance(data, list):
        raise ValueError("a JSON list of templates is required")
    templates = tuple(parse_template(raw, f"template {i}") for i, raw in enumerate(data))
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for template in templates:
        if (template.name, template.language) in seen:
            raise ValueError(f"{template.name}/{template.language} is listed twice")
        if template.id in ids:
            raise ValueError(f"id {template.id} is used twice")
        seen.add((template.name, template.language))
        ids.add(template.id)
    return templates


def load_catalogue(path: Path) -> tuple[CatalogueTemplate, ...]:
    """Read and check a catalogue file; ValueError says in one line what is wrong and where."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None
    return parse_catalogue(data)


def default_catalogue() -> tuple[CatalogueTemplate, ...]:
    return load_catalogue(DEFAULT_CATALOGUE)


def _cursor(template: CatalogueTemplate) -> str:
    """An opaque paging cursor, like Graph's: base64 of the template id."""
    return base64.urlsafe_b64encode(template.id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, name: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _invalid(f"Param {name} is not a valid cursor") from None


def _invalid(details: str) -> GraphError:
    return GraphError(400, 100, "Invalid parameter", details)


@dataclass(frozen=True)
class Page:
    """One page of the listing: its templates as Graph shows them, its cursors, and the query of the pages
    before and after it (None where there is none)."""

    data: list[dict[str, Any]]
    before: str | None
    after: str | None
    previous_query: dict[str, str] | None
    next_query: dict[str, str] | None


class Catalogue:
    """The templates the simulator's business accounts have, looked up by (name, language)."""

    def __init__(self, templates: Sequence[CatalogueTemplate]) -> None:
        self.templates = tuple(templates)
        self.by_key = {(t.name, t.language): t for t in self.templates}

    def find(self, name: str, language: str) -> CatalogueTemplate | None:
        return self.by_key.get((name, language))

    def page(self, query: Mapping[str, str]) -> Page:
        """`GET …/message_templates` with Graph's paging (`limit`, `after`, `before`), `fields`, and the filters
        `status`, `category`, `language` and `name`; Graph's 100 for a bad parameter."""
        limit = _limit(query.get("limit"))
        fields = _fields(query.get("fields"))
        listed = [t for t in self.templates if _matches(t, query)]
        start, end = 0, min(limit, len(listed))
        if query.get("after"):
            start = _position(listed, _decode_cursor(query["after"], "after"), "after") + 1
            end = min(start + limit, len(listed))
        elif query.get("before"):
            end = _position(listed, _decode_cursor(query["before"], "before"), "before")
            start = max(0, end - limit)
        shown = listed[start:end]
        data = [_shown(t, fields) for t in shown]
        if not shown:
            return Page(data, None, None, None, None)
        # The other pages keep this query's parameters (fields, limit, filters) and move only the cursor.
        kept = {key: value for key, value in query.items() if key not in ("after", "before")}
        before, after = _cursor(shown[0]), _cursor(shown[-1])
        previous = {**kept, "before": before} if start > 0 else None
        following = {**kept, "after": after} if end < len(listed) else None
        return Page(data, before, after, previous, following)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise _invalid("Param limit must be an integer") from None
    if limit < 1:
        raise _invalid("Param limit must be a positive integer")
    return min(limit, MAX_LIMIT)


def _fields(value: str | None) -> tuple[str, ...] | None:
    """The fields asked for (with `id`, which Graph always adds), or None for every field of the template."""
    if value is None or not value.strip():
        return None
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    for name in names:
        if name not in KNOWN_FIELDS:
            raise GraphError(400, 100, f"Tried accessing nonexisting field ({name[:64]}) on node type "
                             "(WhatsAppBusinessHSM)", f"Unknown field {name[:64]}")  # fmt: skip
    return names if "id" in names else (*names, "id")


def _matches(template: CatalogueTemplate, query: Mapping[str, str]) -> bool:
    """Meta's filters: `status` and `category` (comma-separated, any case), `language` and `name` exactly."""
    for key, own in (("status", template.status), ("category", template.category)):
        wanted = query.get(key)
        if wanted and own not in {part.strip().upper() for part in wanted.split(",")}:
            return False
    return all(not query.get(key) or query[key] == own for key, own in
               (("language", template.language), ("name", template.name)))  # fmt: skip


def _position(listed: list[CatalogueTemplate], template_id_: str, name: str) -> int:
    for i, template in enumerate(listed):
        if template.id == template_id_:
            return i
    raise _invalid(f"Param {name} is not a valid cursor")


def _shown(template: CatalogueTemplate, fields: tuple[str, ...] | None) -> dict[str, Any]:
    record = dict(template.record)
    if fields is None:
        return record
    return {name: record[name] for name in fields if name in record}
