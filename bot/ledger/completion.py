"""Completion: a dispatching announcement with nothing pending or sending is completed (and its `remind_after`
reminder scheduled)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

log = logging.getLogger(__name__)


async def complete_finished(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s, s.begin():
        ids = [row[0] for row in (await s.execute(query("complete_finished"))).all()]
        # `remind_after`: its reminder is scheduled in the same transaction, so a crash cannot complete an
        # announcement without it; the unique index makes it once however many workers complete at once.
        reminders = (await s.execute(query("auto_reminder_insert"), {"ids": ids})).all() if ids else []
    for aid in ids:
        log.info("announcement %s: completed", aid)
    for r in reminders:
        log.info("announcement %s: reminder %s scheduled for %s (remind_after)", r.reminder_of, r.id, r.send_at)
    return len(ids)
