"""Lenient msgspec views of Meta's webhook body: unknown fields allowed, everything optional.

Only the envelope is decoded strictly enough to reject a body that is not a webhook at all (400). The
events inside (`value.messages[]`, `value.statuses[]`, ...) stay plain JSON until the service converts
them one by one, so one event of a shape we do not expect is stored as it came instead of failing the
whole body; Meta would otherwise retry that body for a week.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bot.graph.messages import ACK_PAYLOAD_PREFIX


class Context(msgspec.Struct, kw_only=True):
    id: str | None = None


class Text(msgspec.Struct, kw_only=True):
    body: str | None = None


class Button(msgspec.Struct, kw_only=True):
    """A tap on a template's quick-reply button: `payload` is what the send set for it, `text` its label."""

    payload: str | None = None
    text: str | None = None


class Reply(msgspec.Struct, kw_only=True):
    id: str | None = None
    title: str | None = None


class Interactive(msgspec.Struct, kw_only=True):
    type: str | None = None
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class System(msgspec.Struct, kw_only=True):
    """Meta's notice that a user changed their number (`user_changed_number`) or user id (`user_changed_user_id`)."""

    type: str | None = None
    body: str | None = None
    # The new number (wa_id) and the new business-scoped user id, when Meta gives them.
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    # Some payloads name the old user id here rather than only in the message's `from_user_id`.
    previous_user_id: str | None = None


class Message(msgspec.Struct, kw_only=True):
    id: str | None = None
    # The sender's number, absent when a user with a WhatsApp username withholds it; `from_user_id` is their
    # business-scoped user id (docs/whatsapp.md#business-scoped-user-ids).
    from_: str | None = msgspec.field(default=None, name="from")
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    timestamp: str | None = None
    type: str | None = None
    context: Context | None = None
    text: Text | None = None
    button: Button | None = None
    interactive: Interactive | None = None
    system: System | None = None

    @property
    def _choice(self) -> Reply | None:
        if self.interactive is None:
            return None
        return self.interactive.button_reply or self.interactive.list_reply

    @property
    def shown_text(self) -> str | None:
        """What the employee typed or the label of what they tapped: the inbox shows it."""
        if self.text is not None and self.text.body is not None:
            return self.text.body
        if self.button is not None:
            return self.button.text if self.button.text is not None else self.button.payload
        choice = self._choice
        if choice is not None:
            return choice.title if choice.title is not None else choice.id
        return None

    @property
    def words(self) -> list[str]:
        """Every string the employee chose or typed, label first: STOP/START/HELP may be any of them."""
        if self.type == "text":
            return [self.text.body] if self.text is not None and self.text.body is not None else []
        if self.type == "button" and self.button is not None:
            return [w for w in (self.button.text, self.button.payload) if w is not None]
        choice = self._choice if self.type == "interactive" else None
        if choice is not None:
            return [w for w in (choice.title, choice.id) if w is not None]
        return []

    @property
    def acked_delivery_id(self) -> int | None:
        """The delivery id an announcement's quick-reply payload carries (`ack:<id>`, set at send time)."""
        payload = self.button.payload if self.button is not None else None
        if payload is None and self._choice is not None:
            payload = self._choice.id
        if payload is None or not payload.startswith(ACK_PAYLOAD_PREFIX):
            return None
        digits = payload.removeprefix(ACK_PAYLOAD_PREFIX)
        # bigint range: a payload we did not write must not become a database error (500).
        return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


class Status(msgspec.Struct, kw_only=True):
    id: str | None = None
    status: str | None = None
    timestamp: str | None = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[dict[str, Any]] | None = None


class Change(msgspec.Struct, kw_only=True):
    field: str | None = None
    # Any: a change whose value is not an object is stored as an unknown event, not refused.
    value: Any = None


class Entry(msgspec.Struct, kw_only=True):
    changes: list[Change] | None = None


class Envelope(msgspec.Struct, kw_only=True):
    object: str | None = None
    entry: list[Entry] | None = None


def decode_envelope(body: bytes) -> Envelope:
    """The webhook body, or msgspec.DecodeError when it is not a JSON webhook object.

    PostgreSQL cannot store U+0000 in text or jsonb; a message containing it (escaped as \\u0000, the only way
    JSON can carry it) would make the whole body fail to store, and Meta would retry it for a week. Such
    characters become U+FFFD, the replacement character; every other body takes the direct typed decode.
    """
    try:
        if b"\\u0000" not in body:
            return msgspec.json.decode(body, type=Envelope)
        return msgspec.convert(_without_nul(msgspec.json.decode(body)), Envelope)
    except RecursionError:
        # Nested deeper than the decoder goes: no webhook Meta sends looks like that.
        raise msgspec.DecodeError("JSON nested too deeply") from None


def _without_nul(item: Any) -> Any:
    if isinstance(item, str):
        return item.replace("\x00", "\ufffd")
    if isinstance(item, list):
        return [_without_nul(x) for x in item]
    if isinstance(item, dict):
        return {_without_nul(k): _without_nul(v) for k, v in item.items()}
    return item
