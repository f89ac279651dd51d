"""One webhook body, one transaction: dedup every event, apply only the new ones (docs/architecture.md#webhooks)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.ledger.acks import acknowledge
from bot.ledger.replies import queue_reply
from bot.ledger.statuses import StatusEvent, apply_statuses, first_error, timestamp
from bot.ledger.tracker import Tracker
from bot.metrics import Metrics
from bot.phones import from_wa_id
from bot.webhook.payloads import Envelope, Message, Status

log = logging.getLogger("jem.webhook")

# Parts of a `messages` change we read elsewhere or need not keep; anything else in it is stored as an event.
_KNOWN_VALUE_KEYS = frozenset({"messaging_product", "metadata", "contacts", "messages", "statuses", "errors"})


def _hash_key(prefix: str, item: Any) -> str:
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}:{digest}"


def _items(value: dict[str, Any], name: str) -> list[Any]:
    items = value.get(name)
    if items is None:
        return []
    return items if isinstance(items, list) else [items]


def _convert(raw: Any, kind: type[Message] | type[Status]) -> Any:
    """The typed view of one event, or None when its shape is not one we know (it is still stored)."""
    if not isinstance(raw, dict):
        return None
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError:
        return None


@dataclass(slots=True)
class _Event:
    key: str
    kind: str
    raw: Any
    typed: Status | Message | None = None


def _events(envelope: Envelope) -> list[_Event]:
    """Every event of the body, whatever its kind: each is stored once, and the ones we act on are typed."""
    events: list[_Event] = []
    for entry in envelope.entry or []:
        for change in entry.changes or []:
            value = change.value
            if change.field != "messages" or not isinstance(value, dict):
                # Kinds we do not act on (user_preferences, template updates, ...): kept once, counted.
                events.append(_Event(_hash_key("ev", [change.field, value]), change.field or "unknown", value))
                continue
            for raw in _items(value, "statuses"):
                st: Status | None = _convert(raw, Status)
                key = f"st:{st.id}:{st.status}" if st is not None and st.id and st.status else _hash_key("st", raw)
                events.append(_Event(key, "status", raw, st))
            for raw in _items(value, "messages"):
                msg: Message | None = _convert(raw, Message)
                key = f"msg:{msg.id}" if msg is not None and msg.id else _hash_key("msg", raw)
                events.append(_Event(key, "message", raw, msg))
            for raw in _items(value, "errors"):
                events.append(_Event(_hash_key("err", raw), "error", raw))
            for name in sorted(value.keys() - _KNOWN_VALUE_KEYS):
                events.append(_Event(_hash_key("ev", [name, value[name]]), f"messages.{name}", value[name]))
    return events


async def process(session: AsyncSession, metrics: Metrics, envelope: Envelope, tracker: Tracker) -> None:
    """Store every event of the body once and apply the new ones, in a fixed order (docs/architecture.md#webhooks).

    The caller commits: the 200 goes out only after everything here is durable.
    """
    events = _events(envelope)
    if not events:
        return
    new = set(
        (
            await session.execute(
                query("webhook_dedup"),
                {
                    "keys": [e.key for e in events],
                    "kinds": [e.kind for e in events],
                    "payloads": [json.dumps(e.raw) for e in events],
                },
            )
        ).scalars()
    )
    fresh: list[_Event] = []
    for event in events:
        is_new = event.key in new
        new.discard(event.key)  # the same event twice in one body: the second one is a duplicate
        metrics.webhook_events.labels(event.kind, "new" if is_new else "duplicate").inc()
        if is_new and event.typed is not None:
            fresh.append(event)

    statuses = [
        StatusEvent(
            wamid=st.id,
            status=st.status,
            at=timestamp(st.timestamp),
            tracked_id=tracker.parse(st.biz_opaque_callback_data),
            error_code=code,
            error_title=title,
        )
        for e in fresh
        if isinstance(st := e.typed, Status) and st.id and st.status
        for code, title in [first_error(st.errors)]
    ]
    matched = await apply_statuses(session, statuses)
    if len(statuses) > len(matched):
        log.info("%d status(es) for messages that are not ours or not known", len(statuses) - len(matched))

    for event in sorted((e for e in fresh if isinstance(e.typed, Message)), key=lambda e: e.key):
        await _message(session, event)


async def _message(session: AsyncSession, event: _Event) -> None:
    msg = event.typed
    if not isinstance(msg, Message) or not msg.id or not msg.from_:
        return
    phone = from_wa_id(msg.from_)
    row = (
        await session.execute(
            query("inbound_insert"),
            {
                "wamid": msg.id,
                "phone": phone,
                "type": msg.type or "unknown",
                "text": msg.shown_text,
                "ctx": msg.context.id if msg.context else None,
                "ack": msg.acked_delivery_id,
                "p": json.dumps(event.raw),
            },
        )
    ).first()
    if row is not None:
        await _interpret(session, msg, phone=phone, row=row)


STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE"})
REPLIES = {
    "stop": "You will no longer receive announcements. Reply START to subscribe again.",
    "start": "You are subscribed to announcements again. Reply STOP to unsubscribe.",
    "help": "This number sends announcements from your employer. Reply STOP to unsubscribe, START to resubscribe.",
}


def keyword(msg: Message) -> str | None:
    """`stop`, `start` or `help` when the employee typed (or tapped a button saying) exactly that word."""
    for word in msg.words:
        normal = word.strip().upper()
        if normal in STOP_WORDS:
            return "stop"
        if normal in ("START", "HELP"):
            return normal.lower()
    return None


async def _interpret(session: AsyncSession, msg: Message, *, phone: str, row: Any) -> None:
    employer_id, employee_id, delivery_id = row
    if delivery_id is not None:
        # A tap or any reply whose context is one of our announcements acknowledges it.
        await acknowledge(session, delivery_id)
    action = keyword(msg)
    if action is None or employee_id is None:
        return
    # One person may work for several employers: STOP and START apply to every one of them.
    if action == "stop":
        await session.execute(query("employee_opt_out"), {"p": phone})
    elif action == "start":
        await session.execute(query("employee_opt_in"), {"p": phone})
    await queue_reply(
        session, employer_id=employer_id, employee_id=employee_id, reply_key=f"{action}:{msg.id}", body=REPLIES[action]
    )
