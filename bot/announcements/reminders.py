"""Reminders (docs/api.md#reminders): a new announcement to the original's employees who were reached and have not
acknowledged, decided when the reminder fans out (bot/ledger/fanout.py), not when it is asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.announcements import service
from bot.contracts import MAX_MESSAGE_LENGTH, FieldError
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError
from bot.ledger import reminders
from bot.templates.service import Lookup

PREFIX = "Reminder: "


def default_message(original: str) -> str:
    """The original's text prefixed; cut to WhatsApp's length limit (the auto reminder's SQL cuts alike)."""
    return (PREFIX + original)[:MAX_MESSAGE_LENGTH]


async def create(
    session: AsyncSession,
    employer_id: int,
    token_id: int | None,
    original_id: int,
    data: contracts.ReminderIn,
    lookup: Lookup,
) -> contracts.Announcement:
    """Insert a `scheduled` reminder of ``original_id``. Does not commit.

    404 when the original is not the employer's; 409 when it has not been sent yet or was cancelled before anything
    of it got out (nobody could be reminded); 422 naming each bad field."""
    original = (await session.execute(query("reminder_original"), {"id": original_id, "e": employer_id})).first()
    if original is None:
        raise NotFoundError("No such announcement.")
    if original.status == "scheduled":
        raise ConflictError(
            "This announcement has not been sent yet (it is scheduled): a reminder can follow it once it is sent."
        )
    if original.status == "cancelled" and not original.reached:
        raise ConflictError("This announcement was cancelled before anything was sent: there is nobody to remind.")
    errors: list[FieldError] = []
    if data.message is None and data.template is None:
        message = default_message(original.message) if original.template is None else original.message
        stored = original.template
    else:
        message, stored = await service._content(session, employer_id, data.message, data.template, lookup, errors)
    send_at = service._send_at(data.send_time, errors)
    if errors:
        raise ValidationFailedError.many(errors)
    params = {
        "e": employer_id,
        "m": message,
        "s": send_at,
        "t": token_id,
        "tpl": None if stored is None else msgspec.json.encode(stored).decode(),
        "original": original_id,
    }
    row = (await session.execute(query("reminder_insert"), params)).one()
    if row.send_at <= datetime.now(UTC):
        await session.execute(query("wake_dispatchers"))
    return await service.get(session, employer_id, row.id)


async def audience(session: AsyncSession, employer_id: int, original_id: int) -> contracts.ReminderAudience:
    await service.ensure_exists(session, employer_id, original_id)
    return contracts.ReminderAudience(count=await reminders.audience_count(session, employer_id, original_id))
