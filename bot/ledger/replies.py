"""Bot replies (STOP/START/HELP) are queued in the ledger; the dispatcher sends them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query


async def queue_reply(
    session: AsyncSession,
    *,
    employer_id: int,
    employee_id: int,
    reply_key: str,
    body: str,
    recipient_user_id: str | None = None,
    phone_number_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """True when queued now; False when this reply_key was queued before (a redelivered webhook).

    ``recipient_user_id``: the person wrote without their number; the reply goes to their business-scoped user id.
    ``phone_number_id``: the employer's own number they wrote to, which the reply goes out from (None: the shared
    number). ``payload``: an interactive message sent instead of ``body`` (which the ledger shows).
    """
    params = {
        "employer_id": employer_id,
        "employee_id": employee_id,
        "reply_key": reply_key,
        "body": body,
        "recipient_user_id": recipient_user_id,
        "pnid": phone_number_id,
        "payload": None if payload is None else json.dumps(payload),
    }
    queued = (await session.execute(query("queue_reply"), params)).scalar() is not None
    if queued:
        await session.execute(query("wake_dispatchers"))
    return queued
