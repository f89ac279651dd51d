"""Request bodies for ``POST /{phone_number_id}/messages`` (docs/whatsapp.md#sending-a-message)."""

from __future__ import annotations

from typing import Any

from bot.settings import Template

# The announcement template's quick-reply button carries `ack:<delivery id>`: Meta echoes the payload on the
# tap, so a tap that arrives without `context.id` still names the delivery it acknowledges
# (docs/whatsapp.md#inbound-messages).
ACK_PAYLOAD_PREFIX = "ack:"


def _envelope(to: str, callback_data: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # Without the "+" Meta prepends the business number's country code: a wrong-recipient risk
        # (docs/whatsapp.md#sending-a-message).
        "to": to if to.startswith("+") else f"+{to}",
        # Our tracker, echoed on every status webhook: how an `unknown` delivery is later proven sent
        # (docs/architecture.md#evidence).
        "biz_opaque_callback_data": callback_data,
    }


def text_message(*, to: str, text: str, callback_data: str) -> dict[str, Any]:
    """A free-form text message (only delivered inside the 24 h customer-service window)."""
    return {**_envelope(to, callback_data), "type": "text", "text": {"preview_url": False, "body": text}}


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
                {"type": "body", "parameters": [{"type": "text", "text": text}]},
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
