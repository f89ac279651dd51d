"""Template parameters as Meta takes them, the preview an operator sees, and the `components` of a send
(docs/whatsapp.md#message-templates).

Meta refuses (132018) a text parameter that holds a newline, a tab or more than four spaces in a row, or is
longer than 1,024 characters. Our rule: every run of whitespace in a parameter becomes one space (a
multi-paragraph announcement becomes one paragraph; the operator sees exactly that in the preview), and a
parameter still longer than 1,024 characters is refused when the announcement is created.
"""

from __future__ import annotations

import re
from typing import Any

from bot.templates.catalogue import Template

MAX_PARAMETER_LENGTH = 1024
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def flatten(text: str) -> str:
    """The parameter as it is sent: whitespace runs (newlines, tabs, spaces) collapsed to one space."""
    return " ".join(text.split())


def _fill(text: str, values: list[str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        index = int(key) - 1 if key.isdigit() else -1
        return values[index] if 0 <= index < len(values) else match.group(0)

    return _PLACEHOLDER.sub(one, text)


def preview(template: Template, parameters: list[str], header: dict[str, str] | None) -> str:
    """The message as the employee will see it (media headers shown as a bracketed line)."""
    params = [flatten(p) for p in parameters]
    lines: list[str] = []
    if template.header_format == "text" and template.header_text:
        lines.append(_fill(template.header_text, [flatten((header or {}).get("text", ""))]))
    elif template.header_format in ("image", "document", "video"):
        source = (header or {}).get("filename") or (header or {}).get("link") or (header or {}).get("media_id") or ""
        lines.append(f"[{template.header_format}{': ' + source if source else ''}]")
    lines.append(_fill(template.body_text, params))
    if template.footer_text:
        lines.append(template.footer_text)
    if template.buttons:
        lines.append(" ".join(f"[{b.get('text', '')}]" for b in template.buttons))
    return "\n".join(lines)


def components(
    template: Template, parameters: list[str], header: dict[str, str] | None, ack_payload: str | None
) -> list[dict[str, Any]]:
    """The `components` of a template send: the header's media or text, the body parameters (flattened), and
    the acknowledgement payload on the first quick-reply button, if the template has one."""
    parts: list[dict[str, Any]] = []
    header = header or {}
    if template.header_format in ("image", "document", "video"):
        media: dict[str, str] = {"id": header["media_id"]} if header.get("media_id") else {"link": header["link"]}
        if template.header_format == "document" and header.get("filename"):
            media["filename"] = header["filename"]
        parts.append(
            {"type": "header", "parameters": [{"type": template.header_format, template.header_format: media}]}
        )
    elif template.header_parameters:
        parts.append({"type": "header", "parameters": [{"type": "text", "text": flatten(header.get("text", ""))}]})
    if template.body_parameters:
        parts.append({"type": "body", "parameters": [{"type": "text", "text": flatten(p)} for p in parameters]})
    index = template.quick_reply_index
    if index is not None and ack_payload is not None:
        parts.append({
            "type": "button",
            "sub_type": "quick_reply",
            "index": str(index),
            "parameters": [{"type": "payload", "payload": ack_payload}],
        })  # fmt: skip
    return parts
