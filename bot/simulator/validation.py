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
    return recipient, callback if callback else content


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
