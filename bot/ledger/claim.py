"""Claim: one statement moves due pending rows to sending, committed before any network I/O."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_CLAIM = text(
    """
WITH claimed AS (
  UPDATE delivery SET status='sending', claimed_by=:me, claimed_at=now(), attempts=attempts+1
  WHERE id IN (SELECT id FROM delivery WHERE status='pending' AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id LIMIT :n FOR UPDATE SKIP LOCKED)
  RETURNING id, kind, announcement_id, employee_id, body, attempts
)
SELECT c.id, c.kind, c.announcement_id, c.attempts, e.phone, COALESCE(a.message, c.body) AS text
FROM claimed c JOIN employee e ON e.id = c.employee_id
LEFT JOIN announcement a ON a.id = c.announcement_id
"""
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    announcement_id: int | None
    attempts: int
    phone: str
    text: str


async def claim(sessionmaker: async_sessionmaker[AsyncSession], *, me: str, n: int) -> list[Claimed]:
    if n <= 0:
        return []
    async with sessionmaker() as s, s.begin():
        rows = (await s.execute(_CLAIM, {"me": me, "n": n})).all()
    return [Claimed(r.id, r.kind, r.announcement_id, r.attempts, r.phone, r.text or "") for r in rows]
