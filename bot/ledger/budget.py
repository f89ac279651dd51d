"""The global send rate: one token bucket row per sending number, shared by every worker."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_ENSURE = text(
    "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 0, clock_timestamp()) "
    "ON CONFLICT (phone_number_id) DO NOTHING"
)
# The row lock serialises takers, so N workers together never exceed rate (plus one burst, see `burst`).
# `blocked_for` tells a taker that got nothing because of a backoff or pause how long asking again is pointless.
_TAKE = text(
    """
UPDATE send_budget b SET tokens = x.avail - x.take, refilled_at = x.at
FROM (
  SELECT z.*, CASE WHEN z.blocked_until > z.at THEN 0 ELSE LEAST(floor(z.avail)::int, :want) END AS take
  FROM (
    SELECT y.phone_number_id, y.at, y.blocked_until,
           LEAST(:burst, y.tokens + :rate * EXTRACT(EPOCH FROM y.at - y.refilled_at)) AS avail
    FROM (
      SELECT phone_number_id, tokens, refilled_at, clock_timestamp() AS at,
             GREATEST(COALESCE(backoff_until, '-infinity'), COALESCE(paused_until, '-infinity')) AS blocked_until
      FROM send_budget WHERE phone_number_id = :p FOR UPDATE
    ) y
  ) z
) x
WHERE b.phone_number_id = x.phone_number_id
RETURNING x.take,
  CASE WHEN x.blocked_until > x.at THEN EXTRACT(EPOCH FROM x.blocked_until - x.at)::float8 ELSE 0 END AS blocked_for
"""
)
# Tokens a taker could not use (fewer rows were due than it took) go back, so they are not lost to everyone.
_GIVE_BACK = text("UPDATE send_budget SET tokens = LEAST(:burst, tokens + :n) WHERE phone_number_id = :p")
_BACKOFF = text(
    "UPDATE send_budget SET backoff_until = "
    "GREATEST(COALESCE(backoff_until, now()), now() + make_interval(secs => :d)) "
    "WHERE phone_number_id = :p"
)
_PAUSE = text(
    "UPDATE send_budget SET paused_until = now() + make_interval(secs => :d), pause_reason = :r "
    "WHERE phone_number_id = :p"
)


@dataclass(frozen=True, slots=True)
class Grant:
    tokens: int
    # > 0 when sending is backed off (130429) or paused (auth/account): seconds until that ends.
    blocked_for: float = 0.0


# How much sending time the bucket can bank. One second's worth (as first built) let a dispatcher that had been
# waiting for free slots send 2x the cap in the next second (`jem-bot bench fanout` measured 1,308 msg/s in one
# second at a 1,000 cap). A fifth of a second still covers several claim ticks, so batching loses nothing.
BURST_SECONDS = 0.2


def burst(rate: float) -> float:
    """The most tokens the bucket holds: BURST_SECONDS of sending, and at least one message."""
    return max(rate * BURST_SECONDS, 1.0)


async def take_in(session: AsyncSession, *, phone_number_id: str, want: int, rate: float) -> Grant:
    """Take up to ``want`` send tokens inside the caller's transaction (the row stays locked until it ends)."""
    if want <= 0:
        return Grant(0)
    params = {"p": phone_number_id, "want": want, "rate": rate, "burst": burst(rate)}
    row = (await session.execute(_TAKE, params)).first()
    if row is None:  # first use of this number: one statement per take is the common case, not two
        await session.execute(_ENSURE, {"p": phone_number_id})
        row = (await session.execute(_TAKE, params)).one()
    return Grant(int(row.take), float(row.blocked_for))


async def give_back_in(session: AsyncSession, *, phone_number_id: str, n: int, rate: float) -> None:
    if n > 0:
        await session.execute(_GIVE_BACK, {"p": phone_number_id, "n": n, "burst": burst(rate)})


async def take(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, want: int, rate: float) -> int:
    """Take up to ``want`` send tokens in a transaction of their own."""
    async with sm() as s, s.begin():
        grant = await take_in(s, phone_number_id=phone_number_id, want=want, rate=rate)
    return grant.tokens


async def back_off(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, seconds: float) -> None:
    async with sm() as s, s.begin():
        await s.execute(_BACKOFF, {"p": phone_number_id, "d": seconds})


async def pause(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, seconds: float, reason: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(_PAUSE, {"p": phone_number_id, "d": seconds, "r": reason[:200]})
