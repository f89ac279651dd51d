"""Lenient msgspec views of Meta's webhook body: unknown fields allowed, everything optional."""

from __future__ import annotations

from typing import Any

import msgspec


class Context(msgspec.Struct, kw_only=True):
    id: str | None = None


class Text(msgspec.Struct, kw_only=True):
    body: str | None = None


class Button(msgspec.Struct, kw_only=True):
    payload: str | None = None
    text: str | None = None


class Reply(msgspec.Struct, kw_only=True):
    id: str | None = None
    title: str | None = None


class Interactive(msgspec.Struct, kw_only=True):
    type: str | None = None
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class Message(msgspec.Struct, kw_only=True):
    id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    timestamp: str | None = None
    type: str | None = None
    context: Context | None = None
    text: Text | None = None
    button: Button | None = None
    interactive: Interactive | None = None


class Status(msgspec.Struct, kw_only=True):
    id: str | None = None
    status: str | None = None
    timestamp: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[dict[str, Any]] | None = None


class Value(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]] | None = None
    statuses: list[dict[str, Any]] | None = None
    errors: list[dict[str, Any]] | None = None


class Change(msgspec.Struct, kw_only=True):
    field: str | None = None
    value: dict[str, Any] | None = None


class Entry(msgspec.Struct, kw_only=True):
    changes: list[Change] | None = None


class Envelope(msgspec.Struct, kw_only=True):
    object: str | None = None
    entry: list[Entry] | None = None
