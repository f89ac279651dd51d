"""One webhook body, one transaction: dedup every event, apply only the new ones (docs/architecture.md#webhooks)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.ledger.acks import acknowledge
from bot.ledger.replies import queue_reply
from bot.ledger.statuses import (
    Applied,
    StatusEvent,
    apply_statuses,
    apply_statuses_on,
    first_error,
    status_key,
    timestamp,
)
from bot.ledger.tracker import Tracker
from bot.metrics import Metrics
from bot.optouts import PhoneHasher, forget
from bot.phones import from_wa_id, user_id
from bot.webhook import identity, routing
from bot.webhook.payloads import Envelope, Message, Status

if TYPE_CHECKING:
    import asyncpg

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
    typed: Message | None = None
    # The number the event came through (`metadata.phone_number_id`): the scope of a user id learned from it.
    phone_number_id: str | None = None


@dataclass(slots=True)
class Body:
    """One webhook body taken apart: its statuses (applied by `apply_statuses`) and every other event."""

    statuses: list[StatusEvent]
    others: list[_Event]

    @property
    def statuses_only(self) -> bool:
        return not self.others


def _payload(item: Any) -> str:
    return msgspec.json.encode(item).decode()


def _phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    pnid = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return pnid if isinstance(pnid, str) and pnid else None


def _status(raw: Any, tracker: Tracker, phone_number_id: str | None) -> StatusEvent:
    st: Status | None = _convert(raw, Status)
    if st is None or not st.id or not st.status:
        # A shape we do not know: stored once (by its content), never applied.
        return StatusEvent(_hash_key("st", raw), _payload(raw), None, None, timestamp(None))
    code, title = first_error(st.errors)
    return StatusEvent(
        key=status_key(st.id, st.status),
        payload=_payload(raw),
        wamid=st.id,
        status=st.status,
        at=timestamp(st.timestamp),
        tracked_id=tracker.parse(st.biz_opaque_callback_data),
        error_code=code,
        error_title=title,
        user_id=user_id(st.recipient_user_id),
        phone_number_id=phone_number_id,
    )


def parse(envelope: Envelope, tracker: Tracker) -> Body:
    """Every event of the body, whatever its kind: each is stored once, and the ones we act on are typed."""
    body = Body([], [])
    for entry in envelope.entry or []:
        for change in entry.changes or []:
            value = change.value
            if change.field != "messages" or not isinstance(value, dict):
                # Kinds we do not act on (user_preferences, template updates, ...): kept once, counted.
                body.others.append(_Event(_hash_key("ev", [change.field, value]), change.field or "unknown", value))
                continue
            pnid = _phone_number_id(value)
            body.statuses += (_status(raw, tracker, pnid) for raw in _items(value, "statuses"))
            for raw in _items(value, "messages"):
                msg: Message | None = _convert(raw, Message)
                key = f"msg:{msg.id}" if msg is not None and msg.id else _hash_key("msg", raw)
                body.others.append(_Event(key, "message", raw, msg, pnid))
            for raw in _items(value, "errors"):
                body.others.append(_Event(_hash_key("err", raw), "error", raw))
            for name in sorted(value.keys() - _KNOWN_VALUE_KEYS):
                body.others.append(_Event(_hash_key("ev", [name, value[name]]), f"messages.{name}", value[name]))
    return body


def _tally(metrics: Metrics, events: list[tuple[str, str]], new: frozenset[str] | set[str]) -> list[bool]:
    """Count each (kind, key) event as new or duplicate; returns which ones are new."""
    unseen, flags = set(new), []
    for kind, key in events:
        is_new = key in unseen
        unseen.discard(key)  # the same event twice in one body: the second one is a duplicate
        metrics.webhook_events.labels(kind, "new" if is_new else "duplicate").inc()
        flags.append(is_new)
    return flags


def _log_unmatched(applied: Applied) -> None:
    if applied.fresh > applied.matched:
        log.info("%d status(es) for messages that are not ours or not known", applied.fresh - applied.matched)


async def store_statuses(conn: asyncpg.Connection, metrics: Metrics, body: Body) -> None:
    """A body of statuses alone: stored and applied in one statement, durable when this returns."""
    applied = await apply_statuses_on(conn, body.statuses)
    _tally(metrics, [("status", e.key) for e in body.statuses], applied.new_keys)
    _log_unmatched(applied)


async def process(session: AsyncSession, metrics: Metrics, body: Body, *, hasher: PhoneHasher | None = None) -> None:
    """Any other body, in the caller's transaction (the caller commits: the 200 goes out only after that).
    ``hasher``: opt-outs kept by a keyed hash of the number (bot/optouts.py); None without JEM_SECRET_KEY.

    Statuses first (their keys, then their deliveries), then every other event's key in one sorted insert, then
    the new messages in key order: two bodies with the same events in any order lock rows in the same order.
    """
    applied = await apply_statuses(session, body.statuses)
    _tally(metrics, [("status", e.key) for e in body.statuses], applied.new_keys)
    _log_unmatched(applied)
    if not body.others:
        return
    params = {
        "keys": [e.key for e in body.others],
        "kinds": [e.kind for e in body.others],
        "payloads": [_payload(e.raw) for e in body.others],
    }
    new = set((await session.execute(query("webhook_dedup"), params)).scalars())
    flags = _tally(metrics, [(e.kind, e.key) for e in body.others], new)
    fresh = [e for e, is_new in zip(body.others, flags, strict=True) if is_new and e.typed is not None]
    for event in sorted(fresh, key=lambda e: e.key):
        await _message(session, event, hasher)


async def _message(session: AsyncSession, event: _Event, hasher: PhoneHasher | None) -> None:
    msg = event.typed
    if not isinstance(msg, Message) or not msg.id:
        return
    # Who wrote: their number, their business-scoped user id (a user with a username may send only that), or both.
    phone = from_wa_id(msg.from_) if msg.from_ else None
    uid = user_id(msg.from_user_id)
    if phone is None and uid is None:
        return
    if msg.type == "system":
        await identity.system_message(
            session, msg, phone=phone, user_id=uid, phone_number_id=event.phone_number_id, hasher=hasher
        )
        return
    if phone is not None and uid is not None:
        # The message names both: proof that this user id is the person with this number.
        await identity.learn_from_message(session, phone=phone, user_id=uid, phone_number_id=event.phone_number_id)
    who = await routing.sender(session, phone=phone, user_id=uid, phone_number_id=event.phone_number_id)
    quote = await routing.quoted(session, msg, who)
    action, chosen = keyword(msg), routing.chosen_employer(msg)
    filed = await routing.filing(session, who, quote, may_hold=action is None and chosen is None)
    if chosen is not None:
        filed = routing.Filing()  # the answer to our question is not a message for anyone's inbox
    params = {
        "wamid": msg.id,
        "employer_id": filed.employer_id,
        "employee_id": filed.employee_id,
        "phone": phone,
        "uid": uid,
        "pnid": event.phone_number_id,
        "held": filed.held,
        "type": msg.type or "unknown",
        "text": msg.shown_text,
        "ctx": msg.context.id if msg.context else None,
        "announcement_id": quote.announcement_id if quote else None,
        "delivery_id": quote.id if quote else None,
        "p": _payload(event.raw),
    }
    if (await session.execute(query("inbound_insert"), params)).first() is None:
        return  # stored before (the dedup key was lost with a purge): already acted on
    if quote is not None:
        # A tap or any reply whose context is one of our announcements acknowledges it.
        await acknowledge(session, quote.id)
    if chosen is not None:
        await _chosen(session, msg, who, chosen)
    elif action is not None:
        await _keyword(session, msg, who, filed, action, hasher)
    elif filed.held and not await routing.asked_before(session, who, msg.id):
        asked = who.in_scope[0]
        await queue_reply(
            session,
            employer_id=asked.employer_id,
            employee_id=asked.id,
            reply_key=f"choose:{msg.id}",
            body=routing.QUESTION,
            recipient_user_id=uid if phone is None else None,
            payload=routing.question(who),
        )


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


async def _keyword(
    session: AsyncSession,
    msg: Message,
    who: routing.Sender,
    filed: routing.Filing,
    action: str,
    hasher: PhoneHasher | None,
) -> None:
    """STOP and START apply at every employer the number written to serves: an employer's own number, that
    employer alone; the shared number, every employer on it the person works for. The answer goes out once."""
    # Every record there, deactivated ones too (`in_scope` keeps only the active ones when there are any): a
    # record reactivated later (POST /employees) must not be sent to after a STOP on this very number.
    ids = [p.id for p in who.served]
    if action == "stop":
        await session.execute(query("employee_opt_out"), {"ids": ids})
    elif action == "start":
        await session.execute(query("employee_opt_in"), {"ids": ids})
        if who.phone is not None:
            # Someone erased after a STOP is no employee any more: their opt-out, kept by hash, ends here too.
            await forget(session, hasher, who.phone, who.own_employer)
    person = who.at(filed.employer_id) if filed.employer_id is not None else None
    answered = person or (who.in_scope[0] if who.in_scope else None)
    if answered is None:
        return  # not an employee of anyone this number serves: nothing to opt out of, nobody to answer as
    await queue_reply(
        session,
        employer_id=answered.employer_id,
        employee_id=answered.id,
        reply_key=f"{action}:{msg.id}",
        body=REPLIES[action],
        # Someone who wrote without their number is answered the way they wrote: at their user id.
        recipient_user_id=who.user_id if who.phone is None else None,
        phone_number_id=who.reply_number,
    )


async def _chosen(session: AsyncSession, msg: Message, who: routing.Sender, employer_id: int) -> None:
    person = await routing.choose(session, who, employer_id)
    if person is None:
        log.info("an answer naming an employer the sender does not work for (here): ignored")
        return
    await queue_reply(
        session,
        employer_id=person.employer_id,
        employee_id=person.id,
        reply_key=f"chose:{msg.id}",
        body=f"Thank you. Your messages here go to {person.employer_name} for the next 24 hours.",
        recipient_user_id=who.user_id if who.phone is None else None,
    )
