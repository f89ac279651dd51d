"""The right to be forgotten (POPIA / GDPR): `DELETE /employees/{id}?erase=true` (docs/architecture.md#erasure).

The employee row stays as an anonymised tombstone, so the ledger's foreign keys and every announcement's counts
are unchanged; what identifies the person goes: their name, number, tags and language, the texts and payloads of
their messages, the raw webhook events about them, the bodies of replies addressed to them, their business-scoped
user ids, Meta's message ids (a wamid encodes the number), their identity changes and employer choices. Nothing
waiting for them is sent afterwards. An opt-out survives as a keyed hash of the number (bot/optouts.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError
from bot.optouts import PhoneHasher, remember
from bot.pagination import MAX_ID

NEEDS_KEY = (
    "This employee opted out (STOP). Erasing them keeps their opt-out as a keyed hash of their number, so that a "
    "later import of the number is not messaged again; that needs JEM_SECRET_KEY (a secret of at least 32 "
    "characters) on the server. Ask the operator to set it, then erase again."
)


async def erase(session: AsyncSession, hasher: PhoneHasher | None, employer_id: int, employee_id: int) -> datetime:
    """Erase one of the employer's employees; returns when. Does not commit: all of it, or nothing, is written.

    404 for an id that is not the employer's or was erased already; 409 when they opted out and there is no key to
    keep that opt-out with (without it, a re-import of their number would message someone who said STOP).
    """
    if not 0 < employee_id <= MAX_ID:
        raise NotFoundError(f"employee {employee_id} not found")
    params = {"id": employee_id, "e": employer_id}
    row = (await session.execute(query("erase_lock"), params)).first()
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    phone: str = row.phone
    if row.opted_out_at is not None:
        if hasher is None:
            raise ConflictError(NEEDS_KEY)
        await remember(session, hasher, employer_id, phone)
    mine = {"id": employee_id}
    await session.execute(query("erase_cancel_pending"), mine)
    uids = [u for u in (await session.execute(query("erase_user_ids"), mine)).scalars() if u]
    sent = list((await session.execute(query("erase_deliveries"), mine)).scalars())
    who = params | {"phone": phone, "uids": uids}
    received = list((await session.execute(query("erase_inbound"), who)).scalars())
    scrub = {"wamids": sent + received, "digits": phone.lstrip("+"), "uids": uids}
    await session.execute(query("erase_webhook_events"), scrub)
    await session.execute(query("erase_identity"), who)
    erased_at: datetime = (await session.execute(query("erase_employee"), mine)).scalar_one()
    return erased_at
