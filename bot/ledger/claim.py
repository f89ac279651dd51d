"""Claim: one statement moves due pending rows to `sending` under a lease, committed before any network I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query
from bot.ledger import budget


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    announcement_id: int | None
    attempts: int
    # Which claim of this row this is: outcome writes name it, so a late one can never land on a newer claim.
    claim: int
    phone: str
    text: str
    # Set for a reply to someone who wrote without their number: send to their business-scoped user id.
    recipient_user_id: str | None = None
    # A structured reply (the interactive list asking which employer a message is for), sent instead of text.
    payload: dict[str, Any] | None = None
    # A template announcement ({"name", "parameters", "header"}), and the languages that choose its translation.
    template: dict[str, Any] | None = None
    employee_language: str | None = None
    employer_language: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    rows: list[Claimed]
    # Send tokens granted for this claim; more than len(rows) means fewer rows were due (the rest went back).
    tokens: int
    blocked_for: float
    # Rows found due but skipped at claim time (the employee opted out or was deactivated since fan-out).
    skipped: int = 0


async def claim_in(
    session: AsyncSession, *, me: str, n: int, lease: float, phone_number_id: str, default_phone_number_id: str
) -> tuple[list[Claimed], int]:
    """Claimed rows to send from ``phone_number_id``, and how many due rows were skipped instead.

    ``default_phone_number_id`` is the shared number: what every employer without its own number sends from.
    """
    if n <= 0:
        return [], 0
    # Rows of the shared number wait with no number (NULL), which the claim's index knows as ''.
    route = "" if phone_number_id == default_phone_number_id else phone_number_id
    params = {"me": me, "n": n, "lease": lease, "pnid": phone_number_id, "route": route}
    rows = (await session.execute(query("claim"), params)).all()
    claimed = [
        Claimed(
            r.id,
            r.kind,
            r.announcement_id,
            r.attempts,
            r.claims,
            r.phone,
            r.text or "",
            r.recipient_user_id,
            r.payload,
            r.template,
            r.employee_language,
            r.employer_language,
        )
        for r in rows
        if r.status == "sending"
    ]
    return claimed, len(rows) - len(claimed)


async def claim_within_budget(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    me: str,
    n: int,
    phone_number_id: str,
    rate: float,
    lease: float,
    default_phone_number_id: str | None = None,
) -> Batch:
    """Take up to ``n`` send tokens of number ``phone_number_id``, claim at most that many due rows going out from
    it, and return the tokens no send used.

    ``default_phone_number_id`` is the shared number (None: ``phone_number_id`` is it). One transaction,
    committed before any network I/O: a failed claim consumes no tokens, and an idle
    dispatcher polling the ledger does not drain the budget other dispatchers are sending on.
    """
    if n <= 0:
        return Batch([], 0, 0.0)
    async with sessionmaker() as s, s.begin():
        grant = await budget.take_in(s, phone_number_id=phone_number_id, want=n, rate=rate)
        rows, skipped = await claim_in(
            s,
            me=me,
            n=grant.tokens,
            lease=lease,
            phone_number_id=phone_number_id,
            default_phone_number_id=default_phone_number_id or phone_number_id,
        )
        await budget.give_back_in(s, phone_number_id=phone_number_id, n=grant.tokens - len(rows), rate=rate)
    return Batch(rows, grant.tokens, grant.blocked_for, skipped)


async def reroute_stranded(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Rows waiting for a number their employer no longer has (a sender change that raced a retry) move to the
    number they go out from now; without this no dispatcher would ever claim them."""
    async with sessionmaker() as s, s.begin():
        return int((await s.execute(query("reroute_stranded"))).rowcount or 0)  # type: ignore[attr-defined]
