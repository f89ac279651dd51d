"""Per-announcement delivery counts, computed from the ledger in one query for one id or a page of ids."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.contracts import DELIVERY_STATUSES, Counts

# Each delivery is counted once under its current status, so the statuses add up to `total`.
_COUNTS = text(
    "SELECT announcement_id, count(*) AS total, "
    + ", ".join(f"count(*) FILTER (WHERE status = '{s}') AS {s}" for s in DELIVERY_STATUSES)
    + ", count(*) FILTER (WHERE acknowledged_at IS NOT NULL) AS acknowledged "
    "FROM delivery WHERE kind = 'announcement' AND announcement_id = ANY(:ids) GROUP BY announcement_id"
)


async def counts_for(session: AsyncSession, announcement_ids: Sequence[int]) -> dict[int, Counts]:
    """Counts for each id; an announcement with no deliveries yet gets all zeros."""
    result = {i: Counts() for i in announcement_ids}
    if not announcement_ids:
        return result
    rows = await session.execute(_COUNTS, {"ids": list(announcement_ids)})
    for row in rows.mappings():
        values = dict(row)
        announcement_id = values.pop("announcement_id")
        result[announcement_id] = Counts(**values)
    return result
