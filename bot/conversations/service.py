"""Conversations with employees: their messages and ours, and operator replies (docs/api.md#conversations).

An operator reply is a ledger reply like the bot's STOP confirmations (docs/architecture.md): a `delivery` row of
kind `reply`, unique by its `reply_key` (`op:<employee id>:<uuid>`), sent once by the dispatcher. WhatsApp takes
free-form text only inside the 24-hour customer-service window their last message opened (docs/whatsapp.md), so
outside it nothing is queued: the answer is a 409 saying a template is needed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.contracts import MAX_MESSAGE_LENGTH
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError
from bot.ledger.replies import queue_reply
from bot.pagination import MAX_ID

log = logging.getLogger("jem.conversations")

WINDOW = timedelta(hours=24)
# Operator replies are the replies whose key starts so: the inbox's `answered` and its index rely on it.
REPLY_KEY_PREFIX = "op:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Microseconds from the epoch to the last instant a datetime can hold (9999-12-31): a larger one is no cursor of ours.
_MAX_MICROS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class Position:
    """Where a conversation page ends: the oldest item's (time it entered the conversation, side, id)."""

    at: datetime
    rank: int  # 0: the employee's message, 1: ours (at the same instant, theirs came first)
    id: int


def encode_cursor(position: Position) -> str:
    micros = (position.at - _EPOCH) // _MICROSECOND
    raw = f"c:{micros}:{position.rank}:{position.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    """The position a cursor of ours names; anything else is a 422 naming `cursor` (as bot/pagination.py does)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, micros, rank, last = raw.split(":")
        numbers = (micros, rank, last)
        # ASCII digits in range only: anything else would fail in the database, a 500 instead of a 422.
        if prefix != "c" or not all(n.isascii() and n.isdigit() for n in numbers):
            raise ValueError(raw)
        if int(micros) > _MAX_MICROS or rank not in ("0", "1") or not 0 < int(last) <= MAX_ID:
            raise ValueError(raw)
        return Position(_EPOCH + int(micros) * _MICROSECOND, int(rank), int(last))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailedError.one("cursor", "is not a cursor this API returned") from None


@dataclass(frozen=True, slots=True)
class Employee:
    """The employee a conversation is with, and what their last message says about the window."""

    id: int
    erased: bool
    last_wrote: datetime | None
    # Where a reply goes out from (None: the shared number) and to whom when they wrote without their number.
    route: str | None
    recipient_user_id: str | None

    def window_closes_at(self) -> datetime | None:
        return None if self.last_wrote is None else self.last_wrote + WINDOW

    def window_open(self, now: datetime) -> bool:
        closes = self.window_closes_at()
        return closes is not None and now < closes


async def employee(session: AsyncSession, employer_id: int, employee_id: int) -> Employee:
    """The employer's employee, else 404: another employer's is answered alike (nothing says it exists)."""
    if not 0 < employee_id <= MAX_ID:
        raise NotFoundError(f"employee {employee_id} not found")
    row = (await session.execute(query("conversation_employee"), {"id": employee_id, "e": employer_id})).first()
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    return Employee(row.id, row.erased_at is not None, row.last_wrote, row.route, row.recipient_user_id)


def _item(row: Any) -> contracts.ConversationItem:
    return contracts.ConversationItem(
        direction=row.direction,
        id=row.id,
        kind=row.kind,
        type=row.type,
        text=row.text,
        announcement_id=row.announcement_id,
        status=row.status,
        at=row.at,
    )


async def conversation(
    session: AsyncSession, employer_id: int, employee_id: int, *, before: Position | None, limit: int
) -> contracts.Conversation:
    """The latest `limit` items before `before`, oldest first, and a cursor to the older ones."""
    who = await employee(session, employer_id, employee_id)
    params = {
        "id": who.id,
        "e": employer_id,
        "at": before.at if before else None,
        "rank": before.rank if before else None,
        "before": before.id if before else None,
        "n": limit + 1,
    }
    rows = (await session.execute(query("conversation_page"), params)).all()
    page = rows[:limit]
    more = len(rows) > limit
    cursor = encode_cursor(Position(page[-1].sort_at, page[-1].rank, page[-1].id)) if more else None
    return contracts.Conversation(
        items=[_item(r) for r in reversed(page)],
        window_open=who.window_open(datetime.now(UTC)),
        window_closes_at=who.window_closes_at(),
        next_cursor=cursor,
    )


def _ago(delta: timedelta) -> str:
    """`2 days`, `1 day`, `25 hours`… how long ago they last wrote, in the largest unit that reads naturally."""
    hours = int(delta.total_seconds() // 3600)
    if hours >= 48:
        days = hours // 24
        return f"{days} days"
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def reply_text(raw: str) -> str:
    text = raw.strip()
    if not 1 <= len(text) <= MAX_MESSAGE_LENGTH:
        raise ValidationFailedError.one("text", f"must be 1–{MAX_MESSAGE_LENGTH} characters after trimming")
    return text


async def reply(session: AsyncSession, employer_id: int, employee_id: int, data: contracts.ReplyIn) -> contracts.Reply:
    """Queue an operator reply in the caller's transaction (the caller commits; the dispatcher wakes then).

    Opted-out employees are answered too: STOP ends announcements, and they wrote to us since (the window is open
    only because they did), so an answer to what they wrote is what they asked for. Erased employees are not: their
    personal data is gone, and we no longer message them.
    """
    who = await employee(session, employer_id, employee_id)
    text = reply_text(data.text)
    if who.erased:
        raise ConflictError(f"employee {employee_id} was erased; nothing can be sent to them")
    now = datetime.now(UTC)
    if who.last_wrote is None:
        raise ConflictError(
            f"employee {employee_id} has never written to us; outside the 24-hour window WhatsApp only allows a "
            "template: send an announcement with one instead"
        )
    if not who.window_open(now):
        raise ConflictError(
            f"employee {employee_id} last wrote {_ago(now - who.last_wrote)} ago; outside the 24-hour window "
            "WhatsApp only allows a template: send an announcement with one instead"
        )
    key = f"{REPLY_KEY_PREFIX}{employee_id}:{uuid.uuid4()}"
    # The window can only have moved later since it was read (a new message): nothing to re-check at insert.
    await queue_reply(
        session,
        employer_id=employer_id,
        employee_id=employee_id,
        reply_key=key,
        body=text,
        recipient_user_id=who.recipient_user_id,
        phone_number_id=who.route,
    )
    row = (await session.execute(query("operator_reply_get"), {"reply_key": key})).one()
    log.info("operator reply %d queued for employee %d", row.id, employee_id)
    return contracts.Reply(
        direction="out",
        id=row.id,
        kind=row.kind,
        type=None,
        text=row.text,
        announcement_id=None,
        status=row.status,
        at=row.at,
        delivery_id=row.id,
    )
