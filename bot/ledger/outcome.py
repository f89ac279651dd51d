"""Outcome writes: short transactions guarded by expected state and claimer; never a downgrade."""

from __future__ import annotations

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Every write is guarded by (status='sending', claimed_by=me): a row the reaper or a webhook moved on is left alone.
_SENT = text(
    "UPDATE delivery SET status='sent', wamid=COALESCE(wamid, :w), sent_at=now() "
    "WHERE id=:id AND status='sending' AND claimed_by=:me"
)
_WAMID_ONLY = text("UPDATE delivery SET wamid=:w WHERE id=:id AND wamid IS NULL")
_CANCELLED = text(
    "UPDATE delivery SET status='cancelled', cancelled_at=now() "
    "WHERE id=:id AND status='sending' AND claimed_by=:me "
    "AND announcement_id IN (SELECT id FROM announcement WHERE status='cancelled')"
)
_RETRY = text(
    "UPDATE delivery SET status='pending', claimed_by=NULL, next_attempt_at=now() + make_interval(secs => :d) "
    "WHERE id=:id AND status='sending' AND claimed_by=:me"
)
_FAILED = text(
    "UPDATE delivery SET status='failed', error_code=:c, error_title=:t, failed_at=now() "
    "WHERE id=:id AND status='sending' AND claimed_by=:me"
)
_UNKNOWN = text(
    "UPDATE delivery SET status='unknown', unknown_at=now() WHERE id=:id AND status='sending' AND claimed_by=:me"
)


async def _run(sm: async_sessionmaker[AsyncSession], stmt: TextClause, params: dict[str, object]) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(stmt, params)
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def record_sent(sm: async_sessionmaker[AsyncSession], *, id: int, me: str, wamid: str | None) -> None:
    n = await _run(sm, _SENT, {"id": id, "me": me, "w": wamid})
    if n == 0 and wamid:
        # A status callback already advanced the row: keep its status, only fill the wamid.
        await _run(sm, _WAMID_ONLY, {"id": id, "w": wamid})


async def record_retry(
    sm: async_sessionmaker[AsyncSession],
    *,
    id: int,
    me: str,
    delay: float,
    exhausted: bool,
    code: int | None,
    title: str,
) -> None:
    # A cancelled announcement's retry is cancelled, not retried.
    if await _run(sm, _CANCELLED, {"id": id, "me": me}):
        return
    if exhausted:
        await record_failed(sm, id=id, me=me, code=code, title=title)
        return
    await _run(sm, _RETRY, {"id": id, "me": me, "d": delay})


async def record_failed(
    sm: async_sessionmaker[AsyncSession], *, id: int, me: str, code: int | None, title: str
) -> None:
    await _run(sm, _FAILED, {"id": id, "me": me, "c": code, "t": title[:500]})


async def record_unknown(sm: async_sessionmaker[AsyncSession], *, id: int, me: str) -> None:
    await _run(sm, _UNKNOWN, {"id": id, "me": me})
