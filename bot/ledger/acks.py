"""Acknowledgements: an employee's tap or reply to an announcement, counted once."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A reply proves the message was read, so the status moves forward to `read` too (never backwards).
_ACK = text(
    """
    UPDATE delivery SET
      acknowledged_at = COALESCE(acknowledged_at, now()),
      status = CASE WHEN status IN ('pending', 'sending', 'unknown', 'sent', 'delivered') THEN 'read' ELSE status END,
      read_at = COALESCE(read_at, now()),
      updated_at = now()
    WHERE id = :id AND kind = 'announcement' AND status NOT IN ('cancelled', 'skipped')
    RETURNING id
    """
)


async def acknowledge(session: AsyncSession, delivery_id: int) -> bool:
    return (await session.execute(_ACK, {"id": delivery_id})).scalar() is not None
