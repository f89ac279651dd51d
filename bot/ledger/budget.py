"""The global send rate: one token bucket row per sending number, shared by every worker."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_ENSURE = text(
    "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 0, clock_timestamp()) "
    "ON CONFLICT (phone_number_id) DO NOTHING"
)
# The row lock serialises takers, so N workers together never exceed rate (plus one burst).
_TAKE = text(
    """
UPDATE send_budget b SET tokens = x.avail - x.take, refilled_at = x.at
FROM (
  SELECT y.*, CASE WHEN y.blocked THEN 0 ELSE LEAST(floor(y.avail)::int, :want) END AS take
  FROM (
    SELECT phone_number_id, clock_timestamp() AS at,
           LEAST(:burst, tokens + :rate * EXTRACT(EPOCH FROM clock_timestamp() - refilled_at)) AS avail,
           (COALESCE(backoff_until, '-infinity') > now() OR COALESCE(paused_until, '-infinity') > now()) AS blocked
    FROM send_budget WHERE phone_number_id = :p FOR UPDATE
  ) y
) x
WHERE b.phone_number_id = x.phone_number_id
RETURNING x.take
"""
)
_BACKOFF = text(
    "UPDATE send_budget SET backoff_until = "
    "GREATEST(COALESCE(backoff_until, now()), now() + make_interval(secs => :d)) "
    "WHERE phone_number_id = :p"
)
_PAUSE = text(
    "UPDATE send_budget SET paused_until = now() + make_interval(secs => :d), pause_reason = :r "
    "WHERE phone_number_id = :p"
)


async def take(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, want: int, rate: float) -> int:
    """Take up to ``want`` send tokens; burst is one second's worth."""
    if want <= 0:
        return 0
    async with sm() as s, s.begin():
        await s.execute(_ENSURE, {"p": phone_number_id})
        got = (
            await s.execute(_TAKE, {"p": phone_number_id, "want": want, "rate": rate, "burst": max(rate, 1.0)})
        ).scalar_one()
    return int(got)


async def back_off(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, seconds: float) -> None:
    async with sm() as s, s.begin():
        await s.execute(_BACKOFF, {"p": phone_number_id, "d": seconds})


async def pause(sm: async_sessionmaker[AsyncSession], *, phone_number_id: str, seconds: float, reason: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(_PAUSE, {"p": phone_number_id, "d": seconds, "r": reason[:200]})
