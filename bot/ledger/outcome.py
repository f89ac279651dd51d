"""Outcome writes: short transactions guarded by expected state and claimer; never a downgrade."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_GUARD = "WHERE id=:id AND status='sending' AND claimed_by=:me"


async def _run(sm: async_sessionmaker[AsyncSession], sql: str, params: dict[str, object]) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(text(sql), params)
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def record_sent(sm: async_sessionmaker[AsyncSession], *, id: int, me: str, wamid: str | None) -> None:
    n = await _run(sm, f"UPDATE delivery SET status='sent', wamid=COALESCE(wamid, :w), sent_at=now() {_GUARD}",
                   {"id": id, "me": me, "w": wamid})
    if n == 0 and wamid:
        # A status callback already advanced the row: keep its status, only fill the wamid.
        await _run(sm, "UPDATE delivery SET wamid=:w WHERE id=:id AND wamid IS NULL", {"id": id, "w": wamid})


async def record_retry(
    sm: async_sessionmaker[AsyncSession], *, id: int, me: str, delay: float, exhausted: bool, code: int | None,
    title: str,
) -> None:
    # A cancelled announcement's retry is cancelled, not retried.
    await _run(sm, f"""UPDATE delivery SET cancelled_at=now(), status='cancelled' {_GUARD}
        AND announcement_id IN (SELECT id FROM announcement WHERE status='cancelled')""", {"id": id, "me": me})
    if exhausted:
        await record_failed(sm, id=id, me=me, code=code, title=title)
        return
    await _run(sm, f"""UPDATE delivery SET status='pending', claimed_by=NULL,
        next_attempt_at=now() + make_interval(secs => :d) {_GUARD}""", {"id": id, "me": me, "d": delay})


async def record_failed(sm: async_sessionmaker[AsyncSession], *, id: int, me: str, code: int | None,
                        title: str) -> None:
    await _run(sm, f"UPDATE delivery SET status='failed', error_code=:c, error_title=:t, failed_at=now() {_GUARD}",
               {"id": id, "me": me, "c": code, "t": title[:500]})


async def record_unknown(sm: async_sessionmaker[AsyncSession], *, id: int, me: str) -> None:
    await _run(sm, f"UPDATE delivery SET status='unknown', unknown_at=now() {_GUARD}", {"id": id, "me": me})
