"""Heartbeats and the reaper: a dead claimer's sending rows become unknown, never pending."""

from __future__ import annotations

import os
import socket

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def heartbeat(sm: async_sessionmaker[AsyncSession], *, me: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(
            text("""INSERT INTO worker (id, hostname, pid) VALUES (:id, :h, :p)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at=now(), stopped_at=NULL"""),
            {"id": me, "h": socket.gethostname(), "p": os.getpid()},
        )


async def stopped(sm: async_sessionmaker[AsyncSession], *, me: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(text("UPDATE worker SET stopped_at=now() WHERE id=:id"), {"id": me})


async def reap(sm: async_sessionmaker[AsyncSession], *, stale_after: float) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(
            text("""UPDATE delivery d SET status='unknown', unknown_at=now(), error_code=NULL,
              error_title='the worker sending it stopped before recording the answer'
            WHERE d.status='sending' AND NOT EXISTS (
              SELECT 1 FROM worker w WHERE w.id = d.claimed_by AND w.stopped_at IS NULL
                AND w.heartbeat_at > now() - make_interval(secs => :s))"""),
            {"s": stale_after},
        )
        return int(res.rowcount or 0)  # type: ignore[attr-defined]
