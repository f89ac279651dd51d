"""A template send checked against the catalogue as Graph checks it, and rendered as the employee reads it.

Runs after `validation.validate_send` (the body's shape) and the OpenAPI check. Codes and messages are Meta's
where known (docs/whatsapp.md#error-codes): 132001 unknown or unapproved translation (HTTP 404), 132000 a
parameter count that does not match, 132012 a header of the wrong kind, 132018 a text parameter Meta refuses,
132005 a body too long once filled in, 131053 a media id nobody uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.simulator.catalogue import MAX_BODY, MAX_HEADER_TEXT, PLACEHOLDER, Catalogue, CatalogueTemplate
from bot.simulator.media import MediaStore
from bot.simulator.validation import GraphError

# Meta's rule for a text parameter (132018): no newline or tab, at most four spaces in a row, 1,024 characters.
MAX_PARAMETER = 1024
MEDIA_HEADERS = ("IMAGE", "DOCUMENT", "VIDEO")


@dataclass(frozen=True)
class TemplateSend:
    """An accepted template send: what the employee reads, and the quick reply a tap on it sends back."""

    template: CatalogueTemplate
    text: str
    # (payload, label) of the template's first quick-reply button; None when it has none.
    ack: tuple[str, str] | None


def _count(where: str, given: int, expected: int) -> GraphError:
    return GraphError(400, 132000, "Number of parameters does not match the expected number of params",
                      f"{where}: number of localizable_params ({given}) does not match the expected number of "
                      f"params ({expected})")  # fmt: skip


def _format(expected: str, received: str) -> GraphError:
    return GraphError(400, 132012, "Parameter format does not match format in the created template",
                      f"header: Format mismatch, expected {expected}, received {received}")  # fmt: skip


def _text_parameter(text: str) -> str:
    """A text parameter as Meta takes it, or its 132018."""
    if "\n" in text or "\r" in text or "\t" in text or "     " in text:
        details = "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"
    elif len(text) > MAX_PARAMETER:
        details = f"Param text must be at most {MAX_PARAMETER} characters, got {len(text)}"
    else:
        return text
    raise GraphError(400, 132018, "There's an issue with the parameters in your template.", details)


def _value(parameter: dict[str, Any], where: str) -> str:
    """The text a body or text-header parameter puts in: a text, or a currency's or date's fallback value."""
    kind = parameter.get("type")
    if kind == "text":
        return _text_parameter(str(parameter["text"]))
    if kind in ("currency", "date_time"):
        value = parameter.get(kind)
        fallback = value.get("fallback_value") if isinstance(value, dict) else None
        if not isinstance(fallback, str) or not fallback:
            raise GraphError(400, 131008, "Required parameter is missing",
                             f"Param {where}['{kind}']['fallback_value'] is required")  # fmt: skip
        return _text_parameter(fallback)
    raise GraphError(400, 132012, "Parameter format does not match format in the created template",
                     f"{where}: Format mismatch, expected TEXT, received {str(kind).upper()}")  # fmt: skip


def _fill(text: str, values: list[str]) -> str:
    return PLACEHOLDER.sub(lambda match: values[int(match.group(1)) - 1], text)


def _components(template: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[Any]]:
    header = body = None
    buttons: list[Any] = []
    for component in template.get("components") or []:
        kind = component.get("type")
        if kind == "button":
            buttons.append(component)
        elif kind in ("header", "body"):
            if (header if kind == "header" else body) is not None:
                raise GraphError(400, 131009, "Parameter value is not valid",
                                 f"Param template['components'] has more than one {kind} component")  # fmt: skip
            header, body = (component, body) if kind == "header" else (header, component)
    return header, body, buttons


def _media(parameter: dict[str, Any], kind: str, media: MediaStore) -> str:
    """Check a media header parameter; what the rendered text shows of it."""
    where = f"template['components']['header']['parameters'][0]['{kind}']"
    source = parameter.get(kind)
    if not isinstance(source, dict) or not (source.get("id") or source.get("link")):
        raise GraphError(400, 131008, "Required parameter is missing", f"Param {where} needs an id or a link")
    if source.get("id"):
        upload = media.get(str(source["id"]))
        if upload is None:
            raise GraphError(400, 131053, "Media upload error", f"Media id {str(source['id'])[:64]} was not found: "
                             "upload the file with POST /{phone_number_id}/media first")  # fmt: skip
        if upload.kind != kind:
            raise GraphError(400, 131053, "Media upload error", f"Media id {upload.id} is {upload.mime_type}, "
                             f"which cannot be sent as {kind}")  # fmt: skip
    else:
        link = source["link"]
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise GraphError(400, 131009, "Parameter value is not valid", f"Param {where}['link'] must be an "
                             "http(s) URL")  # fmt: skip
    shown = source.get("filename") or source.get("link") or source.get("id")
    return f"[{kind}: {shown}]"


def _header(template: CatalogueTemplate, header: dict[str, Any] | None, media: MediaStore) -> str | None:
    """Check the send's header against the template's; the header line the employee reads."""
    parameters = [p for p in (header or {}).get("parameters") or [] if isinstance(p, dict)]
    received = str(parameters[0].get("type")).upper() if parameters else "UNKNOWN"
    expected = template.header_format
    if expected is None:
        if header is not None:
            raise _format("NONE", received)
        return None
    if expected in MEDIA_HEADERS:
        if received != expected:
            raise _format(expected, received)
        if len(parameters) != 1:
            raise _count("header", len(parameters), 1)
        return _media(parameters[0], expected.lower(), media)
    # A TEXT header: text parameters for its placeholders (none when it has no variable).
    if parameters and received in MEDIA_HEADERS:
        raise _format(expected, received)
    if len(parameters) != template.header_parameters:
        raise _count("header", len(parameters), template.header_parameters)
    values = [_value(p, "template['components']['header']['parameters']") for p in parameters]
    text = _fill(template.header_text or "", values)
    if len(text) > MAX_HEADER_TEXT:
        raise GraphError(
            400,
            132005,
            "Translated text too long",
            f"header: the text with its parameters is {len(text)} characters; at most {MAX_HEADER_TEXT}",
        )
    return text


def _buttons(template: CatalogueTemplate, components: list[Any]) -> dict[int, str]:
    """Check the button components against the template's buttons; the payloads they set, by index."""
    payloads: dict[int, str] = {}
    given: set[int] = set()
    for component in components:
        for key in ("sub_type", "index"):
            if component.get(key) is None:
                raise GraphError(400, 131008, "Required parameter is missing",
                                 f"Param template['components']['button']['{key}'] is required")  # fmt: skip
        index = int(component["index"])  # the OpenAPI check lets through "0"-"9" and 0-9 only
        sub_type = str(component["sub_type"])
        button = template.buttons[index] if 0 <= index < len(template.buttons) else None
        if button is None or button.type != sub_type.upper():
            raise GraphError(
                400,
                132000,
                "Number of parameters does not match the expected number of params",
                f"buttons: Button at index {index} of type {sub_type.capitalize()} does not exist",
            )
        given.add(index)
        for parameter in component.get("parameters") or []:
            if isinstance(parameter, dict) and parameter.get("type") == "payload":
                payloads[index] = str(parameter.get("payload"))
    for index, button in enumerate(template.buttons):
        if button.parameters and index not in given:
            raise GraphError(400, 131008, "Required parameter is missing",
                             f"buttons: Button at index {index} of type {button.type.capitalize()} requires a "
                             "parameter")  # fmt: skip
    return payloads


def check_template_send(template: dict[str, Any], catalogue: Catalogue, media: MediaStore) -> TemplateSend:
    """Check a template send (already of the right shape) against the catalogue; GraphError like Meta's."""
    name, language = str(template["name"]), str(template["language"]["code"])
    found = catalogue.find(name, language)
    if found is None or not found.approved:
        # Like Meta: a translation that is not approved (pending, rejected, paused…) is as good as missing.
        raise GraphError(404, 132001, "Template name does not exist in the translation",
                         f"template name ({name[:512]}) does not exist in {language[:16]}")  # fmt: skip
    header, body, buttons = _components(template)
    header_line = _header(found, header, media)
    parameters = [p for p in (body or {}).get("parameters") or [] if isinstance(p, dict)]
    if len(parameters) != found.body_parameters:
        raise _count("body", len(parameters), found.body_parameters)
    values = [_value(p, "template['components']['body']['parameters']") for p in parameters]
    text = _fill(found.body_text, values)
    if len(text) > MAX_BODY:
        raise GraphError(
            400,
            132005,
            "Translated text too long",
            f"body: the text with its parameters is {len(text)} characters; at most {MAX_BODY}",
        )
    payloads = _buttons(found, buttons)
    ack = None
    for index, button in enumerate(found.buttons):
        if button.type == "QUICK_REPLY":
            # Like Meta: without a payload set by the send, a tap's payload is the button's label.
            ack = (payloads.get(index, button.text), button.text)
            break
    return TemplateSend(found, text if header_line is None else f"{header_line}\n{text}", ack)
