"""Request bodies for ``POST /{phone_number_id}/messages`` (docs/whatsapp.md#sending-a-message)."""

from __future__ import annotations

from typing import Any

from bot.settings import Template

# The announcement template's quick-reply button carries `ack:<delivery id>`: Meta echoes the payload on the
# tap, so a tap that arrives without `context.id` still names the delivery it acknowledges
# (docs/whatsapp.md#inbound-messages).
ACK_PAYLOAD_PREFIX = "ack:"


def _envelope(to: str, callback_data: str, recipient_user_id: str | None = None) -> dict[str, Any]:
    address: dict[str, str]
    if recipient_user_id is not None:
        # Someone known only by their business-scoped user id: `recipient` instead of `to` (if both were sent,
        # `to` would win; docs/whatsapp.md#business-scoped-user-ids).
        address = {"recipient": recipient_user_id}
    else:
        # Without the "+" Meta prepends the business number's country code: a wrong-recipient risk
        # (docs/whatsapp.md#sending-a-message).
        address = {"to": to if to.startswith("+") else f"+{to}"}
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        **address,
        # Our tracker, echoed on every status webhook: how an `unknown` delivery is later proven sent
        # (docs/architecture.md#evidence).
        "biz_opaque_callback_data": callback_data,
    }


def text_message(*, to: str, text: str, callback_data: str, recipient_user_id: str | None = None) -> dict[str, Any]:
    """A free-form text message (only delivered inside the 24 h customer-service window)."""
    envelope = _envelope(to, callback_data, recipient_user_id)
    return {**envelope, "type": "text", "text": {"preview_url": False, "body": text}}


def interactive_message(
    *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
) -> dict[str, Any]:
    """An interactive message (a list to choose from; only delivered inside the 24 h customer-service window).
    ``interactive`` is the `interactive` object as Graph takes it (docs/whatsapp.md#interactive-lists)."""
    return {**_envelope(to, callback_data, recipient_user_id), "type": "interactive", "interactive": interactive}


def choice_list(*, body: str, button: str, rows: list[tuple[str, str]]) -> dict[str, Any]:
    """The `interactive` object of a one-section list: (id, title) rows. Graph's limits (docs/whatsapp.md):
    at most 10 rows, titles of 24 characters, ids of 200, a button label of 20, a body of 1,024."""
    return {
        "type": "list",
        "body": {"text": body[:1024]},
        "action": {
            "button": button[:20],
            "sections": [{"title": "Employers", "rows": [{"id": i[:200], "title": t[:24]} for i, t in rows[:10]]}],
        },
    }


def named_template_message(
    *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
) -> dict[str, Any]:
    """A template from the catalogue in one translation, its components already built (bot/templates/render.py)."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return {**_envelope(to, callback_data), "type": "template", "template": template}


def template_message(
    *, to: str, template: Template, text: str, callback_data: str, ack_payload: str | None = None
) -> dict[str, Any]:
    """The approved announcement template with the text as its one body parameter.

    Its quick-reply button (the first button: the acknowledgement, docs/whatsapp.md#template-message) gets
    ``ack:<delivery id>`` as its payload, so the tap identifies the delivery even when Meta sends it without
    `context`.
    """
    return {
        **_envelope(to, callback_data),
        "type": "template",
        "template": {
            "name": template.name,
            "language": {"code": template.language},
            "components": [
                # Meta refuses a parameter with a newline, a tab or 5+ spaces in a row (132018): collapsed.
                {"type": "body", "parameters": [{"type": "text", "text": " ".join(text.split())}]},
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [
                        {"type": "payload", "payload": ack_payload or f"{ACK_PAYLOAD_PREFIX}{callback_data}"}
                    ],
                },
            ],
        },
    }
