"""Completion: a dispatching announcement with nothing pending or sending is completed."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

log = logging.getLogger(__name__)


async def complete_finished(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s, s.begin():
        ids = [row[0] for row in (await s.execute(query("complete_finished"))).all()]
    for aid in ids:
        log.info("announcement %s: completed", aid)
    return len(ids)
