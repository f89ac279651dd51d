"""Resending deliveries whose outcome is `unknown`: the one operator action that knowingly risks a duplicate,
so it is always recorded (who, when, how many) in `resend_request`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import ConflictError, NotFoundError


async def resend_unknown(
    session: AsyncSession, employer_id: int, announcement_id: int, token_id: int | None
) -> tuple[int, datetime]:
    """Move `unknown` deliveries back to `pending` (due now); a completed announcement goes back to
    `dispatching` so the dispatcher picks them up. Returns (count, requested_at). Does not commit."""
    status = (
        await session.execute(
            text("SELECT status FROM announcement WHERE id = :id AND employer_id = :e FOR UPDATE"),
            {"id": announcement_id, "e": employer_id},
        )
    ).scalar_one_or_none()
    if status is None:
        raise NotFoundError("No such announcement.")
    if status == "cancelled":
        raise ConflictError("The announcement is cancelled; nothing of it is sent again.")
    result = await session.execute(
        text(
            """
            UPDATE delivery
               SET status = 'pending', next_attempt_at = now(), resend_count = resend_count + 1,
                   error_code = NULL, error_title = NULL,
                   claimed_by = NULL, claimed_at = NULL, updated_at = now()
             WHERE announcement_id = :id AND kind = 'announcement' AND status = 'unknown'
            """
        ),
        {"id": announcement_id},
    )
    resent = int(result.rowcount)  # type: ignore[attr-defined]
    if resent and status == "completed":
        await session.execute(
            text(
                "UPDATE announcement SET status = 'dispatching', completed_at = NULL, updated_at = now() WHERE id = :id"
            ),
            {"id": announcement_id},
        )
    requested_at = (
        await session.execute(
            text(
                "INSERT INTO resend_request (employer_id, announcement_id, api_token_id, deliveries) "
                "VALUES (:e, :id, :t, :n) RETURNING requested_at"
            ),
            {"e": employer_id, "id": announcement_id, "t": token_id, "n": resent},
        )
    ).scalar_one()
    return resent, requested_at
