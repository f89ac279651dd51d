"""Who an employee is on WhatsApp: business-scoped user ids learned on proof, and Meta's identity changes.

A user who adopts a WhatsApp username may write without their number, known only by a business-scoped user id
(BSUID, docs/whatsapp.md#business-scoped-user-ids). An id is attached to an employee only on proof: a status of
our own send to them naming it (bot/db/queries.sql `apply_statuses`), a send answer naming it (`record_sent`),
or a message carrying both their number and it (here). Meta's system messages announce a changed number or user
id; the mapping follows, keeping the history, and the employee (with their opt-out) stays the same.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.optouts import PhoneHasher, restore
from bot.phones import InvalidPhoneError, from_wa_id, normalise_phone, user_id
from bot.webhook.payloads import Message

log = logging.getLogger("jem.webhook")


async def learn_from_message(session: AsyncSession, *, phone: str, user_id: str, phone_number_id: str | None) -> None:
    await session.execute(query("user_id_from_message"), {"phone": phone, "uid": user_id, "pnid": phone_number_id})


async def system_message(
    session: AsyncSession,
    msg: Message,
    *,
    phone: str | None,
    user_id: str | None,
    phone_number_id: str | None,
    hasher: PhoneHasher | None,
) -> None:
    """`user_changed_number` and `user_changed_user_id`: the sender is who they were; the system part says who
    they are now."""
    system = msg.system
    if system is None or system.type not in ("user_changed_number", "user_changed_user_id"):
        return
    old_user_id = user_id or _user_id(system.previous_user_id)
    ids = list((await session.execute(query("employees_of_sender"), {"phone": phone, "uid": old_user_id})).scalars())
    if not ids:
        log.info("identity change for someone who is not an employee here: ignored")
        return
    new_user_id = _user_id(system.user_id)
    if system.type == "user_changed_number":
        new_phone = _phone(system.wa_id)
        if new_phone is not None:
            moved = (await session.execute(query("employee_change_phone"), {"ids": ids, "new": new_phone})).all()
            changed = [r.id for r in moved]
            await _record(session, changed, "number", phone, new_phone, msg.id)
            # A number someone erased had opted out of, at that employer: the employee comes back opted out.
            for employer_id in sorted({r.employer_id for r in moved}):
                await restore(session, hasher, employer_id, [new_phone])
            if len(changed) < len(ids):
                log.warning("%d employee(s) kept their old number: another employee of their employer has the new one",
                            len(ids) - len(changed))  # fmt: skip
    if new_user_id is not None and new_user_id != old_user_id:
        params = {
            "ids": ids,
            "uid": new_user_id,
            "parent": _user_id(system.parent_user_id),
            "pnid": phone_number_id,
        }
        await session.execute(query("user_id_replace"), params)
        await _record(session, ids, "user_id", old_user_id, new_user_id, msg.id)


async def _record(
    session: AsyncSession, ids: list[int], kind: str, old: str | None, new: str | None, wamid: str | None
) -> None:
    if ids:
        params = {"ids": ids, "kind": kind, "old": old, "new": new, "wamid": wamid}
        await session.execute(query("identity_change_record"), params)


def _user_id(value: str | None) -> str | None:
    return user_id(value)


def _phone(wa_id: str | None) -> str | None:
    if not wa_id:
        return None
    try:
        return normalise_phone(from_wa_id(wa_id.strip()))
    except InvalidPhoneError:
        return None
