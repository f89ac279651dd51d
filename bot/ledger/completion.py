"""Completion: a dispatching announcement with nothing pending or sending is completed."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)


async def complete_finished(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s, s.begin():
        res = await s.execute(
            text("""UPDATE announcement a SET status='completed', completed_at=now()
            WHERE a.status='dispatching' AND NOT EXISTS (SELECT 1 FROM delivery d WHERE d.announcement_id=a.id
              AND d.status IN ('pending','sending'))
            RETURNING a.id""")
        )
        ids = [row[0] for row in res.all()]
    for aid in ids:
        log.info("announcement %s: completed", aid)
    return len(ids)
