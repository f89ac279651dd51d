"""Bot replies (STOP/START/HELP) are queued in the ledger; the dispatcher sends them."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_QUEUE = text(
    "INSERT INTO delivery (employer_id, employee_id, kind, body, reply_key, status) "
    "VALUES (:employer_id, :employee_id, 'reply', :body, :reply_key, 'pending') "
    "ON CONFLICT (reply_key) DO NOTHING RETURNING id"
)


async def queue_reply(session: AsyncSession, *, employer_id: int, employee_id: int, reply_key: str, body: str) -> bool:
    """True when queued now; False when this reply_key was queued before (a redelivered webhook)."""
    params = {"employer_id": employer_id, "employee_id": employee_id, "reply_key": reply_key, "body": body}
    return (await session.execute(_QUEUE, params)).scalar() is not None
