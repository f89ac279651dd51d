"""Per-announcement delivery counts, computed from the ledger in one query for one id or a page of ids."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from bot.contracts import Counts
from bot.db.queries import query


async def counts_for(session: AsyncSession, announcement_ids: Sequence[int]) -> dict[int, Counts]:
    """Counts for each id; an announcement with no deliveries yet gets all zeros."""
    result = {i: Counts() for i in announcement_ids}
    if not announcement_ids:
        return result
    rows = await session.execute(query("delivery_counts"), {"ids": list(announcement_ids)})
    for row in rows.mappings():
        values = dict(row)
        announcement_id = values.pop("announcement_id")
        result[announcement_id] = Counts(**values)
    return result
