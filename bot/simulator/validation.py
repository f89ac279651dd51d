"""Validate a send request the way the Cloud API does, answering its error envelope.

See docs/whatsapp.md#error-envelope.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

SUPPORTED_TYPES = {"text", "template", "image", "document", "audio", "video", "sticker", "interactive", "reaction"}
MAX_TEXT = 4096
# Interactive messages (Meta's limits): body text, header and footer text, a list's button label, its sections
# and rows (counted over all sections), a row's id, title and description; reply buttons and their titles/ids.
MAX_INTERACTIVE_BODY = 1024
MAX_HEADER = 60
MAX_FOOTER = 60
MAX_LIST_BUTTON = 20
MAX_SECTIONS = 10
MAX_ROWS = 10
MAX_SECTION_TITLE = 24
MAX_ROW_ID = 200
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_ID = 256
MAX_BUTTON_TITLE = 20
# Interactive kinds Meta sends besides `list` and `button`: accepted without a closer look.
OTHER_INTERACTIVE = {"cta_url", "flow", "product", "product_list", "catalog_message", "location_request_message",
                     "address_message", "call_permission_request", "voice_call"}  # fmt: skip
# A business-scoped user id: an ISO 3166 country code, a dot, then letters and digits (Meta's are digits).
BSUID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")


class GraphError(Exception):
    """An error Graph answers synchronously: nothing was accepted."""

    def __init__(self, status: int, code: int, message: str, details: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": f"(#{self.code}) {self.message}",
                "type": "OAuthException",
                "code": self.code,
                "error_data": {"messaging_product": "whatsapp", "details": self.details},
                "fbtrace_id": secrets.token_urlsafe(9),
            }
        }


def _bad(code: int, message: str, details: str) -> GraphError:
    return GraphError(400, code, message, details)


@dataclass(frozen=True)
class Recipient:
    """Who a send is for: the phone digits it is recorded under, and how the send named them."""

    phone: str  # digits, no `+`
    input: str  # `to` as the send wrote it, or the BSUID it named as `recipient`
    via: Literal["phone", "bsuid"]


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _recipient(body: dict[str, Any], directory: Mapping[str, str]) -> Recipient:
    """`to` (a phone number) wins; else `recipient`, a BSUID the simulator handed out (in `directory`)."""
    to, bsuid = body.get("to"), body.get("recipient")
    if not _given(to) and _given(bsuid):
        if not isinstance(bsuid, str) or not BSUID.fullmatch(bsuid.strip()):
            raise _bad(131009, "Parameter value is not valid",
                       "Param recipient must be a business-scoped user id such as ZA.1502576394655843")  # fmt: skip
        phone = directory.get(bsuid.strip())
        if phone is None:
            raise _bad(131009, "Parameter value is not valid", "Param recipient is not a user id of this business")
        return Recipient(phone, bsuid.strip(), "bsuid")
    if not isinstance(to, str) or not to.strip():
        raise _bad(131008, "Required parameter is missing", "The parameter to (or recipient) is required.")
    digits = to.strip().removeprefix("+")
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise _bad(131009, "Parameter value is not valid", "Param to must be a phone number in E.164 format")
    return Recipient(digits, to, "phone")


def validate(body: object, directory: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return (recipient digits, dedup key: callback data or the text) or raise GraphError."""
    recipient, key = validate_send(body, directory or {})
    return recipient.phone, key


def validate_send(body: object, directory: Mapping[str, str]) -> tuple[Recipient, str]:
    """Return (the recipient, dedup key: callback data or the text) or raise GraphError.

    `directory` maps each BSUID the simulator handed out to its phone digits: a send may name one as
    `recipient` instead of `to`.
    """
    if not isinstance(body, dict):
        raise _bad(100, "Invalid parameter", "Request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise _bad(100, "Invalid parameter", "Param messaging_product must be 'whatsapp'")
    recipient = _recipient(body, directory)
    kind = body.get("type", "text")
    if "type" not in body:
        raise _bad(131008, "Required parameter is missing", "The parameter type is required.")
    if kind not in SUPPORTED_TYPES:
        raise _bad(100, "Invalid parameter", f"Param type must be one of {sorted(SUPPORTED_TYPES)}")
    callback = body.get("biz_opaque_callback_data")
    if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
        raise _bad(131009, "Parameter value is not valid", "Param biz_opaque_callback_data must be a string (512)")
    content = ""
    if kind == "text":
        text = body.get("text")
        text_body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(text_body, str) or not text_body.strip():
            raise _bad(131008, "Required parameter is missing", "Param text['body'] is required and non-empty")
        if len(text_body) > MAX_TEXT:
            raise _bad(131009, "Parameter value is not valid", f"Param text['body'] must be at most {MAX_TEXT}")
        content = text_body
    elif kind == "template":
        content = _validate_template(body.get("template"))
    elif kind == "interactive":
        content = interactive_text(_validate_interactive(body.get("interactive")))
    return recipient, callback if callback else content


def interactive_text(interactive: dict[str, Any]) -> str:
    """What the recipient reads of a valid interactive message: its body, then the options' titles in
    brackets (`Which employer is your message for? [Acme | Demo Ltd]`)."""
    body = interactive.get("body")
    text = str(body.get("text") or "") if isinstance(body, dict) else ""
    titles = [title for _, title in _options(interactive)]
    return f"{text} [{' | '.join(titles)}]" if titles else text


def interactive_choices(interactive: object) -> tuple[str, list[dict[str, str]]] | None:
    """A valid list's rows or reply buttons as a reply to it names them: (`list_reply` or `button_reply`, …)."""
    if not isinstance(interactive, dict) or interactive.get("type") not in {"list", "button"}:
        return None
    reply = "list_reply" if interactive["type"] == "list" else "button_reply"
    choices = []
    for option_id, title in _options(interactive):
        choices.append({"id": option_id, "title": title})
    if reply == "list_reply":
        rows = [row for section in interactive["action"]["sections"] for row in section["rows"]]
        for choice, row in zip(choices, rows, strict=True):
            if isinstance(row.get("description"), str):
                choice["description"] = row["description"]
    return reply, choices


def _options(interactive: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, title) of a valid list's rows or reply buttons, in order; none for other kinds."""
    action = interactive.get("action")
    if not isinstance(action, dict):
        return []
    if interactive.get("type") == "list":
        return [(row["id"], row["title"]) for section in action["sections"] for row in section["rows"]]
    if interactive.get("type") == "button":
        return [(b["reply"]["id"], b["reply"]["title"]) for b in action["buttons"]]
    return []


def _text_field(value: object, where: str, limit: int, *, required: bool = True) -> str | None:
    """A string parameter: missing or blank 131008 (when required), not a string 100, too long 131009."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _bad(131008, "Required parameter is missing", f"Param {where} is required and non-empty")
        return None
    if not isinstance(value, str):
        raise _bad(100, "Invalid parameter", f"Param {where} must be a string")
    if len(value) > limit:
        raise _bad(131009, "Parameter value is not valid",
                   f"Param {where} must be at most {limit} characters, got {len(value)}")  # fmt: skip
    return value


def _object(value: object, where: str, *, required: bool = True) -> dict[str, Any] | None:
    if value is None:
        if required:
            raise _bad(131008, "Required parameter is missing", f"Param {where} is required")
        return None
    if not isinstance(value, dict):
        raise _bad(100, "Invalid parameter", f"Param {where} must be an object")
    return value


def _validate_interactive(interactive: object) -> dict[str, Any]:
    """Check an interactive message as Graph does (`list` and reply `button` closely); return it."""
    checked = _object(interactive, "interactive")
    assert checked is not None
    kind = checked.get("type")
    if kind is None:
        raise _bad(131008, "Required parameter is missing", "Param interactive['type'] is required")
    if kind in OTHER_INTERACTIVE:
        return checked
    if kind not in {"list", "button"}:
        allowed = sorted({"list", "button"} | OTHER_INTERACTIVE)
        raise _bad(100, "Invalid parameter", f"Param interactive['type'] must be one of {allowed}")
    body = _object(checked.get("body"), "interactive['body']")
    assert body is not None
    _text_field(body.get("text"), "interactive['body']['text']", MAX_INTERACTIVE_BODY)
    header = _object(checked.get("header"), "interactive['header']", required=False)
    if header is not None:
        if header.get("type") != "text" and kind == "list":
            raise _bad(131009, "Parameter value is not valid", "Param interactive['header']['type'] of a list "
                       "must be 'text'")  # fmt: skip
        if header.get("type") == "text":
            _text_field(header.get("text"), "interactive['header']['text']", MAX_HEADER)
    footer = _object(checked.get("footer"), "interactive['footer']", required=False)
    if footer is not None:
        _text_field(footer.get("text"), "interactive['footer']['text']", MAX_FOOTER)
    action = _object(checked.get("action"), "interactive['action']")
    assert action is not None
    if kind == "list":
        _validate_list_action(action)
    else:
        _validate_button_action(action)
    return checked


def _validate_list_action(action: dict[str, Any]) -> None:
    _text_field(action.get("button"), "interactive['action']['button']", MAX_LIST_BUTTON)
    sections = action.get("sections")
    if sections is None:
        raise _bad(131008, "Required parameter is missing", "Param interactive['action']['sections'] is required")
    if not isinstance(sections, list):
        raise _bad(100, "Invalid parameter", "Param interactive['action']['sections'] must be an array")
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise _bad(131009, "Parameter value is not valid", f"Param interactive['action']['sections'] must hold "
                   f"1 to {MAX_SECTIONS} sections, got {len(sections)}")  # fmt: skip
    ids: set[str] = set()
    total = 0
    for i, section in enumerate(sections):
        where = f"interactive['action']['sections'][{i}]"
        checked = _object(section, where)
        assert checked is not None
        # Like Meta: a section's title may be left out only when the list has a single section.
        _text_field(checked.get("title"), f"{where}['title']", MAX_SECTION_TITLE, required=len(sections) > 1)
        rows = checked.get("rows")
        if rows is None:
            raise _bad(131008, "Required parameter is missing", f"Param {where}['rows'] is required")
        if not isinstance(rows, list):
            raise _bad(100, "Invalid parameter", f"Param {where}['rows'] must be an array")
        if not rows:
            raise _bad(131009, "Parameter value is not valid", f"Param {where}['rows'] must hold at least 1 row")
        total += len(rows)
        if total > MAX_ROWS:
            raise _bad(131009, "Parameter value is not valid",
                       f"A list may hold at most {MAX_ROWS} rows in total over all sections")  # fmt: skip
        for j, row in enumerate(rows):
            row_where = f"{where}['rows'][{j}]"
            checked_row = _object(row, row_where)
            assert checked_row is not None
            row_id = _text_field(checked_row.get("id"), f"{row_where}['id']", MAX_ROW_ID)
            _text_field(checked_row.get("title"), f"{row_where}['title']", MAX_ROW_TITLE)
            _text_field(checked_row.get("description"), f"{row_where}['description']", MAX_ROW_DESCRIPTION,
                        required=False)  # fmt: skip
            if row_id in ids:
                raise _bad(131009, "Parameter value is not valid",
                           f"Param {row_where}['id'] must be unique: {row_id!r} is used twice")  # fmt: skip
            ids.add(str(row_id))


def _validate_button_action(action: dict[str, Any]) -> None:
    buttons = action.get("buttons")
    if buttons is None:
        raise _bad(131008, "Required parameter is missing", "Param interactive['action']['buttons'] is required")
    if not isinstance(buttons, list):
        raise _bad(100, "Invalid parameter", "Param interactive['action']['buttons'] must be an array")
    if not 1 <= len(buttons) <= MAX_REPLY_BUTTONS:
        raise _bad(131009, "Parameter value is not valid", f"Param interactive['action']['buttons'] must hold "
                   f"1 to {MAX_REPLY_BUTTONS} buttons, got {len(buttons)}")  # fmt: skip
    ids: set[str] = set()
    for i, button in enumerate(buttons):
        where = f"interactive['action']['buttons'][{i}]"
        checked = _object(button, where)
        assert checked is not None
        if checked.get("type") != "reply":
            raise _bad(131009, "Parameter value is not valid", f"Param {where}['type'] must be 'reply'")
        reply = _object(checked.get("reply"), f"{where}['reply']")
        assert reply is not None
        button_id = _text_field(reply.get("id"), f"{where}['reply']['id']", MAX_BUTTON_ID)
        _text_field(reply.get("title"), f"{where}['reply']['title']", MAX_BUTTON_TITLE)
        if button_id in ids:
            raise _bad(131009, "Parameter value is not valid",
                       f"Param {where}['reply']['id'] must be unique: {button_id!r} is used twice")  # fmt: skip
        ids.add(str(button_id))


def _validate_template(template: object) -> str:
    if not isinstance(template, dict):
        raise _bad(131008, "Required parameter is missing", "Param template is required")
    name = template.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(131008, "Required parameter is missing", "Param template['name'] is required")
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
        raise _bad(131008, "Required parameter is missing", "Param template['language']['code'] is required")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise _bad(131009, "Parameter value is not valid", "Param template['components'] must be an array")
    texts: list[str] = []
    for component in components:
        if not isinstance(component, dict) or component.get("type") not in {"header", "body", "button", "footer"}:
            raise _bad(131009, "Parameter value is not valid", "Each template component needs a valid type")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            raise _bad(132000, "Number of parameters does not match the expected number of params", "parameters")
        for parameter in parameters:
            if not isinstance(parameter, dict) or "type" not in parameter:
                raise _bad(131009, "Parameter value is not valid", "Each template parameter needs a type")
            if parameter["type"] == "text":
                if not isinstance(parameter.get("text"), str) or not parameter["text"]:
                    raise _bad(132000, "Number of parameters does not match the expected number of params", "text")
                texts.append(parameter["text"])
    return f"{name}:{'|'.join(texts)}"
