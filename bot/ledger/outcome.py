"""Outcome writes: short transactions naming the claim that made the call (docs/architecture.md#outcomes).

Each is guarded by the row's claim number, so it is safe to repeat (a retry after the database came back
changes nothing the first write did) and it can never land on a newer claim of the same row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query
from bot.ledger import budget


async def _run(sm: async_sessionmaker[AsyncSession], statement: TextClause, params: Mapping[str, object]) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(statement, params)
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A send Meta accepted: its wamid is proof, whatever happens to the row meanwhile."""

    id: int
    wamid: str
    # The recipient's business-scoped user id, when Graph's answer named it.
    user_id: str | None = None
    # The number it went out from (its back-off escalation is reset: it works).
    phone_number_id: str | None = None
    # The template translation used, and Meta's pacing status when not plain "accepted".
    language: str | None = None
    message_status: str | None = None


async def record_sent_many(
    sm: async_sessionmaker[AsyncSession],
    *,
    sent: Sequence[Accepted | tuple[int, str]],
    default_phone_number_id: str = "",
) -> None:
    """Record a batch of accepted sends in one transaction.

    A wamid is proof of acceptance: it moves the row to `sent` whatever happened to it meanwhile (the lease
    expired and it is `unknown`, it was queued again...). Each number named is healthy again (its back-off
    escalation is reset), and a user id in an answer is learned for the number the row went out from.
    """
    if not sent:
        return
    rows = [s if isinstance(s, Accepted) else Accepted(s[0], s[1]) for s in sent]
    params = {
        "ids": [r.id for r in rows],
        "wamids": [r.wamid for r in rows],
        "user_ids": [r.user_id for r in rows],
        "languages": [r.language for r in rows],
        "message_statuses": [r.message_status for r in rows],
        "default": default_phone_number_id,
    }
    numbers = sorted({r.phone_number_id for r in rows if r.phone_number_id})
    async with sm() as s, s.begin():
        await s.execute(query("record_sent"), params)
        for number in numbers:
            await budget.recovered_in(s, phone_number_id=number)


async def record_retry(
    sm: async_sessionmaker[AsyncSession],
    *,
    id: int,
    claim: int,
    delay: float,
    spent: bool,
    code: int | None,
    title: str,
) -> int:
    """Provably not accepted: pending again after ``delay`` s (cancelled if its announcement was cancelled).

    ``spent`` is False for sender-wide causes and pauses: the attempt is given back to the recipient.
    """
    params = {"id": id, "claim": claim, "delay": delay, "spent": spent, "code": code, "title": title[:500]}
    return await _run(sm, query("record_retry"), params)


async def record_failed(
    sm: async_sessionmaker[AsyncSession], *, id: int, claim: int, code: int | None, title: str
) -> int:
    return await _run(sm, query("record_failed"), {"id": id, "claim": claim, "code": code, "title": title[:500]})


async def record_unknown(
    sm: async_sessionmaker[AsyncSession], *, id: int, claim: int, title: str, code: int | None = None
) -> int:
    return await _run(sm, query("record_unknown"), {"id": id, "claim": claim, "code": code, "title": title[:500]})
