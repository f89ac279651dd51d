"""The sender: a token bucket per sending number shared by every worker, and its sender-wide back-off and pause.

Both are rows in PostgreSQL, so every worker on every machine obeys the same rate, the same back-off and the
same pause (docs/architecture.md#the-sender).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

# How much sending time the bucket can bank. One second's worth (as first built) let a dispatcher that had been
# waiting for free slots send 2x the cap in the next second (`jem-bot bench fanout` measured 1,308 msg/s in one
# second at a 1,000 cap). A fifth of a second still covers several claim ticks, so batching loses nothing.
BURST_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Grant:
    tokens: int
    # > 0 when sending is backed off or paused: seconds until that ends.
    blocked_for: float = 0.0


@dataclass(frozen=True, slots=True)
class SenderState:
    phone_number_id: str
    paused_until: datetime | None = None
    pause_reason: str | None = None
    backoff_until: datetime | None = None
    backoff_reason: str | None = None


def burst(rate: float) -> float:
    """The most tokens the bucket holds: BURST_SECONDS of sending, and at least one message."""
    return max(rate * BURST_SECONDS, 1.0)


async def take_in(session: AsyncSession, *, phone_number_id: str, want: int, rate: float) -> Grant:
    """Take up to ``want`` send tokens inside the caller's transaction (the row stays locked until it ends)."""
    if want <= 0:
        return Grant(0)
    params = {"p": phone_number_id, "want": want, "rate": rate, "burst": burst(rate)}
    row = (await session.execute(query("budget_take"), params)).first()
    if row is None:  # first use of this number: one statement per take is the common case, not two
        await session.execute(query("budget_ensure"), {"p": phone_number_id})
        row = (await session.execute(query("budget_take"), params)).one()
    return Grant(int(row.take), float(row.blocked_for))


async def give_back_in(session: AsyncSession, *, phone_number_id: str, n: int, rate: float) -> None:
    if n > 0:
        await session.execute(query("budget_give_back"), {"p": phone_number_id, "n": n, "burst": burst(rate)})


async def take(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, want: int, rate: float) -> int:
    """Take up to ``want`` send tokens in a transaction of their own."""
    async with sm() as s, s.begin():
        grant = await take_in(s, phone_number_id=phone_number_id, want=want, rate=rate)
    return grant.tokens


async def back_off(
    sm: async_sessionmaker[AsyncSession],
    *,
    phone_number_id: str,
    reason: str,
    retry_after: float | None,
    base: float,
    cap: float,
    ok_at: datetime | None = None,
) -> float:
    """Stop every worker sending from this number for a while; returns how long (seconds from now).

    The first failure after a quiet spell waits ``base`` seconds, and each further wave twice as long, up to
    ``cap``: a two-minute Graph outage is probed a dozen times, and sending resumes within ``cap`` of its end.
    ``ok_at`` is when the caller last saw a send from this number go through: after the previous back-off ended,
    it means the number works, so this wave is a first one again (occasional throttling must not grow into long
    stalls just because the successes' batched writes land after the next 130429).
    """
    params = {
        "p": phone_number_id,
        "reason": reason[:200],
        "retry_after": retry_after,
        "base": base,
        "cap": cap,
        "ok_at": ok_at,
    }
    async with sm() as s, s.begin():
        await s.execute(query("budget_ensure"), {"p": phone_number_id})
        seconds = (await s.execute(query("sender_back_off"), params)).scalar_one()
    return max(0.0, float(seconds))


async def pause(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, seconds: float, reason: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(query("budget_ensure"), {"p": phone_number_id})
        await s.execute(query("sender_pause"), {"p": phone_number_id, "d": seconds, "reason": reason[:200]})


async def recovered_in(session: AsyncSession, *, phone_number_id: str) -> None:
    """A send went through: the next back-off starts small again, and an expired pause is forgotten."""
    await session.execute(query("sender_recovered"), {"p": phone_number_id})


async def state(session: AsyncSession, *, phone_number_id: str) -> SenderState:
    row = (await session.execute(query("sender_state"), {"p": phone_number_id})).first()
    if row is None:
        return SenderState(phone_number_id)
    return SenderState(phone_number_id, row.paused_until, row.pause_reason, row.backoff_until, row.backoff_reason)
