"""Liveness: heartbeats, the lease reaper, and a worker's own orphaned claims (docs/architecture.md#leases).

A claim is judged by what is stored in the database (its lease, its worker's expiry), never by the
configuration of whichever machine runs the reaper.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query


async def heartbeat(sm: async_sessionmaker[AsyncSession], *, me: str, ttl: float) -> None:
    """Record that worker ``me`` is alive for the next ``ttl`` seconds."""
    async with sm() as s, s.begin():
        await s.execute(
            query("worker_heartbeat"), {"id": me, "host": socket.gethostname(), "pid": os.getpid(), "ttl": ttl}
        )


async def stopped(sm: async_sessionmaker[AsyncSession], *, me: str) -> None:
    async with sm() as s, s.begin():
        await s.execute(query("worker_stopped"), {"id": me})


async def reap(sm: async_sessionmaker[AsyncSession]) -> int:
    """Expired leases, and claims of stopped or silent workers, become `unknown` (never `pending`)."""
    async with sm() as s, s.begin():
        res = await s.execute(query("reap"))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


async def release_orphans(sm: async_sessionmaker[AsyncSession], *, me: str, keep: Collection[int]) -> list[int]:
    """Give back rows worker ``me`` holds in `sending` but is not sending (``keep`` are the ones it is).

    Only the worker itself may call this: it alone knows that no request left for a row it never started.
    """
    async with sm() as s, s.begin():
        rows = await s.execute(query("release_orphans"), {"me": me, "keep": list(keep)})
        return [r[0] for r in rows]


async def purge_workers(sm: async_sessionmaker[AsyncSession], *, days: float) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(query("purge_workers"), {"days": days})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]
