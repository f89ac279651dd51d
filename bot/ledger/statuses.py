"""Apply Meta's status callbacks to the ledger, forward only (docs/architecture.md#evidence).

The order is `delivery_rank()` in SQL (migration 0002): pending/sending/unknown < sent < delivered < read <
failed, so the result does not depend on arrival order. `cancelled`/`skipped` rows were never sent and are
never touched. A status is matched by its wamid, else by our authenticated tracker (bot.ledger.tracker), but
only to a row we really sent whose outcome we do not know yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query

META_STATUSES = ("sent", "delivered", "read", "failed")


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One status callback, already deduplicated: the wamid, Meta's status and time, and what proves it ours."""

    wamid: str
    status: str
    at: datetime
    tracked_id: int | None = None
    error_code: int | None = None
    error_title: str | None = None


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


async def apply_statuses(session: AsyncSession, events: Sequence[StatusEvent]) -> set[int]:
    """Apply every event in one statement; returns the ids of the deliveries they matched."""
    events = [e for e in events if e.status in META_STATUSES and e.wamid]
    if not events:
        return set()
    rows = await session.execute(
        query("apply_statuses"),
        {
            "wamids": [e.wamid for e in events],
            "statuses": [e.status for e in events],
            "ts": [e.at for e in events],
            "tids": [e.tracked_id for e in events],
            "codes": [e.error_code for e in events],
            "titles": [e.error_title for e in events],
        },
    )
    return {r[0] for r in rows}
