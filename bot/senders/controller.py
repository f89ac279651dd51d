"""`/sender`: the number an employer's announcements go out from, and whether it can send right now
(docs/api.md#sender)."""

from __future__ import annotations

from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.errors import ProblemOperation, problems
from bot.senders import service
from bot.state import AppState

STATE_NOTE = (
    "A paused number (an expired token, a locked account) or a backed-off one (throttling, Graph unreachable) "
    "sends nothing until the time shown; deliveries wait as `pending` and no recipient's attempts are used up."
)


class SenderController(Controller):
    path = "/sender"
    tags = ["Account"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @get(
        "/",
        operation_id="GetSender",
        summary="The WhatsApp number announcements go out from, and whether it is paused or backed off",
        description="`own` is false for the installation's shared number. " + STATE_NOTE,
        responses=problems(401),
        operation_class=ProblemOperation,
    )
    async def get_sender(
        self, state: AppState, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> contracts.Sender:
        return await service.get(db_session, state.settings, principal.employer_id)

    @put(
        "/",
        operation_id="SetSender",
        summary="Send from the employer's own WhatsApp number",
        description="The access token is stored encrypted and never returned (only its last four characters). "
        "Announcements not yet sent go out from the new number; each number has its own rate, back-off and "
        "pause. 409 when the number is another employer's, or the server has no JEM_SECRET_KEY.",
        responses=problems(
            400,
            401,
            (409, "The number is another employer's own, or the server has no JEM_SECRET_KEY"),
            413,
            422,
        ),
        operation_class=ProblemOperation,
    )
    async def put_sender(
        self,
        data: JSONBody[contracts.SenderIn],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Sender:
        sender = await service.put(db_session, state.settings, principal.employer_id, data)
        await db_session.commit()
        return sender

    @delete(
        "/",
        status_code=200,
        operation_id="DeleteSender",
        summary="Send from the installation's shared number again",
        responses=problems(401),
        operation_class=ProblemOperation,
    )
    async def delete_sender(
        self, state: AppState, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> contracts.Sender:
        await service.delete(db_session, principal.employer_id)
        await db_session.commit()
        return await service.get(db_session, state.settings, principal.employer_id)
