"""Reminders as the ledger sees them: who a reminder would reach now, and how each reminder did.

The audience rule lives in bot/db/queries.sql (`reminder_fan_out_insert`, applied by fan-out, and
`reminder_audience_count`); docs/api.md#reminders states it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.db.queries import query


async def audience_count(session: AsyncSession, employer_id: int, original_id: int) -> int:
    """Employees a reminder of ``original_id`` fanned out now would reach."""
    params = {"original": original_id, "eid": employer_id}
    return int((await session.execute(query("reminder_audience_count"), params)).scalar_one())


async def summaries(session: AsyncSession, employer_id: int, announcement_id: int) -> list[contracts.ReminderSummary]:
    """The reminders below an announcement, oldest first, with their reach and acknowledgements."""
    rows = (await session.execute(query("reminder_summaries"), {"id": announcement_id, "e": employer_id})).all()
    return [
        contracts.ReminderSummary(
            id=r.id,
            status=r.status,
            send_time=r.send_at,
            recipients=r.recipients,
            acknowledged=r.acknowledged,
            acknowledgement_rate=r.acked_by_then / r.reached if r.reached else 0.0,
        )
        for r in rows
    ]
