"""The Graph account an employer talks through: its own number's, else the installation's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto import TokenBox
from bot.db.queries import query
from bot.errors import ConflictError
from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class Account:
    """What talking to Graph for an employer takes: its number, its business account, the token."""

    phone_number_id: str
    waba_id: str
    token: str
    own: bool

    def __repr__(self) -> str:  # never show the token
        return f"Account(phone_number_id={self.phone_number_id!r}, waba_id={self.waba_id!r}, own={self.own})"


async def account(session: AsyncSession, settings: Settings, employer_id: int, *, templates: bool = True) -> Account:
    """The employer's own number and account, else the installation's; ConflictError when there is no account id
    to read templates from (``templates``: the caller needs it; an upload from the number does not)."""
    row = (await session.execute(query("sender_account"), {"e": employer_id})).first()
    if row is not None:
        token = TokenBox(settings.secret_key).open(bytes(row.access_token))
        return Account(row.phone_number_id, row.waba_id, token, True)
    if templates and not settings.whatsapp_waba_id:
        raise ConflictError(
            "Templates need the WhatsApp Business Account id: set WHATSAPP_WABA_ID on the server (or give this "
            "employer its own number with PUT /sender)."
        )
    return Account(settings.whatsapp_phone_number_id, settings.whatsapp_waba_id, settings.whatsapp_access_token, False)
