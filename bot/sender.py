"""GET /sender: the number an employer sends from, and whether it can send right now."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.ledger import budget
from bot.state import AppState


def token_hint(token: str) -> str | None:
    """The last four characters, enough to tell two tokens apart; never more of a secret."""
    return f"…{token[-4:]}" if len(token) >= 12 else None


@get(
    "/sender",
    operation_id="GetSender",
    tags=["Account"],
    summary="The WhatsApp number announcements go out from, and whether it is paused or backed off",
    description="A paused number (an expired token, a locked account) or a backed-off one (throttling, Graph "
    "unreachable) sends nothing until the time shown; deliveries wait as `pending` and no recipient's attempts "
    "are used up meanwhile.",
)
async def get_sender(
    state: AppState, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
) -> contracts.Sender:
    settings = state.settings
    phone = settings.whatsapp_phone_number_id or "default"
    now = await budget.state(db_session, phone_number_id=phone)
    return contracts.Sender(
        own=False,
        phone_number_id=settings.whatsapp_phone_number_id,
        waba_id=settings.whatsapp_waba_id or None,
        rate=settings.send_rate,
        access_token_hint=token_hint(settings.whatsapp_access_token),
        paused_until=now.paused_until,
        pause_reason=now.pause_reason,
        backoff_until=now.backoff_until,
        backoff_reason=now.backoff_reason,
    )
