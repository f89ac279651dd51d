"""Claim: one statement moves due pending rows to sending, committed before any network I/O."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ledger import budget

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


@dataclass(frozen=True, slots=True)
class Batch:
    rows: list[Claimed]
    # Send tokens granted for this claim; more than len(rows) means fewer rows were due (the rest went back).
    tokens: int
    blocked_for: float


async def claim_in(session: AsyncSession, *, me: str, n: int) -> list[Claimed]:
    if n <= 0:
        return []
    rows = (await session.execute(_CLAIM, {"me": me, "n": n})).all()
    return [Claimed(r.id, r.kind, r.announcement_id, r.attempts, r.phone, r.text or "") for r in rows]


async def claim_within_budget(
    sessionmaker: async_sessionmaker[AsyncSession], *, me: str, n: int, phone_number_id: str, rate: float
) -> Batch:
    """Take up to ``n`` send tokens, claim at most that many due rows, and return the tokens no row used.

    One transaction, committed before any network I/O: a failed claim consumes no tokens, and an idle
    dispatcher polling the ledger does not drain the budget other dispatchers are sending on.
    """
    if n <= 0:
        return Batch([], 0, 0.0)
    async with sessionmaker() as s, s.begin():
        grant = await budget.take_in(s, phone_number_id=phone_number_id, want=n, rate=rate)
        rows = await claim_in(s, me=me, n=grant.tokens)
        await budget.give_back_in(s, phone_number_id=phone_number_id, n=grant.tokens - len(rows), rate=rate)
    return Batch(rows, grant.tokens, grant.blocked_for)
