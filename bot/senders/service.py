"""Senders: the number an employer's announcements go out from, its own or the installation's shared one."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.crypto import TokenBox, hint
from bot.db.queries import query
from bot.errors import ConflictError, ValidationFailedError
from bot.ledger import budget
from bot.settings import Settings

# Graph's ids are digits; a token is one printable word.
_ID = re.compile(r"[0-9]{5,32}")
_TOKEN = re.compile(r"[\x21-\x7e]{10,2048}")
MIN_RATE, MAX_RATE = 1.0, 1000.0


async def get(session: AsyncSession, settings: Settings, employer_id: int) -> contracts.Sender:
    row = (await session.execute(query("sender_get"), {"e": employer_id})).first()
    if row is None:
        return await _view(session, False, settings.whatsapp_phone_number_id, settings.whatsapp_waba_id or None,
                           settings.send_rate, hint(settings.whatsapp_access_token) if settings.whatsapp_access_token
                           else None)  # fmt: skip
    return await _view(session, True, row.phone_number_id, row.waba_id, row.rate, row.access_token_hint)


async def put(
    session: AsyncSession, settings: Settings, employer_id: int, data: contracts.SenderIn
) -> contracts.Sender:
    """Set the employer's own number. Does not commit."""
    errors: list[contracts.FieldError] = []
    if not _ID.fullmatch(data.phone_number_id):
        errors.append(contracts.FieldError(field="phone_number_id", message="must be Graph's phone number id: digits"))
    elif data.phone_number_id == settings.whatsapp_phone_number_id:
        errors.append(
            contracts.FieldError(field="phone_number_id", message="is the installation's shared number, not an own one")
        )
    if not _ID.fullmatch(data.waba_id):
        errors.append(contracts.FieldError(field="waba_id", message="must be the WhatsApp Business Account id: digits"))
    if not _TOKEN.fullmatch(data.access_token):
        errors.append(
            contracts.FieldError(field="access_token", message="must be the Graph access token (10-2048 characters)")
        )
    if not MIN_RATE <= data.rate <= MAX_RATE:
        errors.append(contracts.FieldError(field="rate", message=f"must be {MIN_RATE:g}-{MAX_RATE:g} messages/second"))
    if errors:
        raise ValidationFailedError.many(errors)
    if not settings.secret_key:
        raise ConflictError(
            "Own numbers need JEM_SECRET_KEY (a secret of at least 32 characters) on the server, to encrypt the "
            "access token; ask the operator to set it."
        )
    params: dict[str, Any] = {
        "e": employer_id,
        "p": data.phone_number_id,
        "w": data.waba_id,
        "token": TokenBox(settings.secret_key).seal(data.access_token),
        "hint": hint(data.access_token),
        "rate": data.rate,
    }
    await _lock(session, employer_id)
    try:
        async with session.begin_nested():
            row = (await session.execute(query("sender_put"), params)).one()
    except IntegrityError:
        raise ConflictError("That number is another employer's own number.") from None
    # What waits goes out from this number now; a pause caused by the old token (190: expired, revoked) ends with
    # the new one; and the dispatchers look at senders again now rather than at their next poll.
    await session.execute(query("sender_reroute"), {"e": employer_id})
    await session.execute(query("sender_unpause"), {"p": data.phone_number_id})
    await session.execute(query("wake_dispatchers"))
    return await _view(session, True, row.phone_number_id, row.waba_id, row.rate, row.access_token_hint)


async def delete(session: AsyncSession, employer_id: int) -> None:
    await _lock(session, employer_id)
    await session.execute(query("sender_delete"), {"e": employer_id})
    await session.execute(query("sender_reroute"), {"e": employer_id})
    await session.execute(query("wake_dispatchers"))


async def _lock(session: AsyncSession, employer_id: int) -> None:
    """Serialise with fan-outs of this employer's announcements: each reads the sender to route its rows, and the
    re-routing here must see every row they make (docs/architecture.md#several-numbers)."""
    await session.execute(query("employer_lock"), {"e": employer_id})


async def _view(
    session: AsyncSession, own: bool, phone_number_id: str, waba_id: str | None, rate: float, token_hint: str | None
) -> contracts.Sender:
    now = await budget.state(session, phone_number_id=phone_number_id or "default")
    return contracts.Sender(
        own=own,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        rate=rate,
        access_token_hint=token_hint,
        paused_until=now.paused_until,
        pause_reason=now.pause_reason,
        backoff_until=now.backoff_until,
        backoff_reason=now.backoff_reason,
    )
