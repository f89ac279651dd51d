"""Cancelling an announcement: the only way an operator stops deliveries that have not been sent yet."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError


async def cancel(session: AsyncSession, employer_id: int, announcement_id: int) -> int:
    """scheduled → cancelled; dispatching → cancelled with its `pending` deliveries cancelled (rows already
    `sending` or sent stay as they are). Returns how many deliveries were cancelled. Does not commit.

    The announcement row is locked FOR UPDATE first; fan-out locks it the same way, so a cancel and a
    fan-out serialise and no pending row can appear after the cancel has run.
    """
    params = {"id": announcement_id, "e": employer_id}
    status = (await session.execute(query("announcement_lock"), params)).scalar_one_or_none()
    if status is None:
        raise NotFoundError("No such announcement.")
    if status not in ("scheduled", "dispatching"):
        raise ConflictError(f"Only a scheduled or dispatching announcement can be cancelled; this one is {status}.")
    await session.execute(query("announcement_cancel"), {"id": announcement_id})
    result = await session.execute(query("cancel_pending"), {"id": announcement_id})
    return int(result.rowcount)  # type: ignore[attr-defined]
