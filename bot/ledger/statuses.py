"""Apply Meta's status callbacks to the ledger, once each and forward only (docs/architecture.md#evidence).

`apply_statuses` (bot/db/queries.sql) stores each status's dedup key and applies only the new ones, in one
statement. It runs inside a SQLAlchemy session when a webhook body carries more than statuses, and straight on
an asyncpg connection (one round trip, nothing else in the way) for the bodies of statuses alone that make up
nearly all of Meta's traffic. The order is `delivery_rank()` in SQL (migration 0002).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import positional, query

if TYPE_CHECKING:
    import asyncpg

META_STATUSES = ("sent", "delivered", "read", "failed")


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One status callback: its dedup key and payload (stored as received), and what it says and proves.

    ``wamid``/``status`` are None for a status whose shape we do not know: it is stored, never applied.
    """

    key: str
    payload: str
    wamid: str | None
    status: str | None
    at: datetime
    tracked_id: int | None = None
    error_code: int | None = None
    error_title: str | None = None
    # The recipient's business-scoped user id, and the number the status came through (its scope).
    user_id: str | None = None
    phone_number_id: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    new_keys: frozenset[str]
    # New events that named a delivery status we act on, and deliveries they changed or matched.
    fresh: int
    matched: int
    # Business-scoped user ids learned from these statuses.
    learned: int = 0


def status_key(wamid: str, status: str) -> str:
    return f"st:{wamid}:{status}"


def timestamp(raw: str | None) -> datetime:
    """Meta's Unix-seconds timestamp; now when it is missing or malformed (a status is still evidence)."""
    try:
        return datetime.fromtimestamp(int(raw or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def first_error(errors: list[dict[str, Any]] | None) -> tuple[int | None, str | None]:
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    # error_code is an int4: a code outside it (not Meta's) must not turn the whole webhook into an error.
    code = code if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 2**31 else None
    title = first.get("title")
    return code, title if isinstance(title, str) else None


def _params(events: Sequence[StatusEvent]) -> dict[str, Any]:
    return {
        "keys": [e.key for e in events],
        "payloads": [e.payload for e in events],
        "wamids": [e.wamid for e in events],
        "statuses": [e.status for e in events],
        "ts": [e.at for e in events],
        "tids": [e.tracked_id for e in events],
        "codes": [e.error_code for e in events],
        "titles": [e.error_title for e in events],
        "user_ids": [e.user_id for e in events],
        "pnids": [e.phone_number_id for e in events],
    }


def _applied(row: Any) -> Applied:
    return Applied(frozenset(row[0] or ()), int(row[1]), int(row[2]), int(row[3]))


async def apply_statuses(session: AsyncSession, events: Sequence[StatusEvent]) -> Applied:
    """Store and apply inside the caller's transaction (the caller commits)."""
    if not events:
        return Applied(frozenset(), 0, 0)
    return _applied((await session.execute(query("apply_statuses"), _params(events))).one())


async def apply_statuses_on(conn: asyncpg.Connection, events: Sequence[StatusEvent]) -> Applied:
    """Store and apply in one statement of its own: durable when this returns."""
    if not events:
        return Applied(frozenset(), 0, 0)
    statement = positional("apply_statuses")
    return _applied(await conn.fetchrow(statement.sql, *statement.args(_params(events))))
