"""Outcome writes: short transactions guarded by expected state and claimer; never a downgrade."""

from __future__ import annotations

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Every write is guarded by (status='sending', claimed_by=me): a row the reaper or a webhook moved on is left alone.
# Sent: many sends in one statement. Rows a status callback (or the reaper) moved on keep their status and only get
# the wamid, as evidence; a row another worker is sending (ours was reaped, then resent) is that worker's to record.
# Rows the first UPDATE changed are excluded from the second by `sent`: one statement may not update a row twice.
_SENT = text(
    """
WITH v AS (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:wamids AS text[])) AS v(id, wamid)),
sent AS (
  UPDATE delivery d SET status='sent', wamid=COALESCE(d.wamid, v.wamid), sent_at=now(), updated_at=now()
  FROM v WHERE d.id = v.id AND d.status='sending' AND d.claimed_by=:me
  RETURNING d.id
)
UPDATE delivery d SET wamid = v.wamid FROM v
WHERE d.id = v.id AND d.wamid IS NULL AND v.wamid IS NOT NULL AND d.status <> 'sending'
  AND d.id NOT IN (SELECT id FROM sent)
"""
)
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
# Why it is unknown is kept in error_code/error_title for the operator; a status webhook that settles the row
# (bot.ledger.statuses) or a resend clears it.
_UNKNOWN = text(
    "UPDATE delivery SET status='unknown', unknown_at=now(), error_code=:c, error_title=:t "
    "WHERE id=:id AND status='sending' AND claimed_by=:me"
)


async def _run(sm: async_sessionmaker[AsyncSession], stmt: TextClause, params: dict[str, object]) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(stmt, params)
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def record_sent_many(
    sm: async_sessionmaker[AsyncSession], *, me: str, sent: list[tuple[int, str | None]]
) -> None:
    """Record a batch of (delivery id, wamid) Meta accepted: one short transaction instead of one per send."""
    if not sent:
        return
    ids, wamids = [i for i, _ in sent], [w for _, w in sent]
    async with sm() as s, s.begin():
        await s.execute(_SENT, {"ids": ids, "wamids": wamids, "me": me})


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


async def record_unknown(
    sm: async_sessionmaker[AsyncSession], *, id: int, me: str, title: str, code: int | None = None
) -> None:
    await _run(sm, _UNKNOWN, {"id": id, "me": me, "c": code, "t": title[:500]})
