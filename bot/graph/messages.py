"""Request bodies for ``POST /{phone_number_id}/messages`` (WHATSAPP.md §5.1-5.2)."""

from __future__ import annotations

from typing import Any

from bot.settings import Template


def _envelope(to: str, callback_data: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # Without the "+" Meta prepends the business number's country code: a wrong-recipient risk (§5.1).
        "to": to if to.startswith("+") else f"+{to}",
        # Echoed on every status webhook: how an `unknown` delivery is later proven sent (DESIGN.md §3).
        "biz_opaque_callback_data": callback_data,
    }


def text_message(*, to: str, text: str, callback_data: str) -> dict[str, Any]:
    """A free-form text message (only delivered inside the 24 h customer-service window)."""
    return {**_envelope(to, callback_data), "type": "text", "text": {"preview_url": False, "body": text}}


def template_message(*, to: str, template: Template, text: str, callback_data: str) -> dict[str, Any]:
    """The approved announcement template with the text as its one body parameter.

    Its quick-reply button is part of the approved template; payload buttons need no parameter.
    """
    return {
        **_envelope(to, callback_data),
        "type": "template",
        "template": {
            "name": template.name,
            "language": {"code": template.language},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": text}]}],
        },
    }
