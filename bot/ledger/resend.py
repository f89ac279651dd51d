"""Resending deliveries whose outcome is `unknown`: the one operator action that knowingly risks a duplicate,
so it is always recorded (who, when, how many) in `resend_request`. A row with a wamid is never resent: Meta
accepted it (docs/architecture.md#resend-unknown)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError


async def resend_unknown(
    session: AsyncSession, employer_id: int, announcement_id: int, token_id: int | None
) -> tuple[int, datetime]:
    """Move `unknown` deliveries without a wamid back to `pending` (due now); a completed announcement goes back
    to `dispatching` so the dispatcher picks them up. Returns (count, requested_at). Does not commit."""
    params = {"id": announcement_id, "e": employer_id}
    status = (await session.execute(query("announcement_lock"), params)).scalar_one_or_none()
    if status is None:
        raise NotFoundError("No such announcement.")
    if status == "cancelled":
        raise ConflictError("The announcement is cancelled; nothing of it is sent again.")
    resent = int((await session.execute(query("resend_unknown"), {"id": announcement_id})).rowcount)  # type: ignore[attr-defined]
    if resent and status == "completed":
        await session.execute(query("announcement_reopen"), {"id": announcement_id})
    if resent:
        await session.execute(query("wake_dispatchers"))
    requested_at: datetime = (
        await session.execute(
            query("resend_record"), {"e": employer_id, "id": announcement_id, "t": token_id, "n": resent}
        )
    ).scalar_one()
    return resent, requested_at
