"""Bot replies (STOP/START/HELP) are queued in the ledger; the dispatcher sends them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query


async def queue_reply(session: AsyncSession, *, employer_id: int, employee_id: int, reply_key: str, body: str) -> bool:
    """True when queued now; False when this reply_key was queued before (a redelivered webhook)."""
    params = {"employer_id": employer_id, "employee_id": employee_id, "reply_key": reply_key, "body": body}
    queued = (await session.execute(query("queue_reply"), params)).scalar() is not None
    if queued:
        await session.execute(query("wake_dispatchers"))
    return queued
