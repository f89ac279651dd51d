"""`/templates`: the approved WhatsApp templates announcements can use (docs/api.md#templates)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.errors import ProblemOperation, problems
from bot.state import AppState
from bot.templates import service


class TemplateController(Controller):
    path = "/templates"
    tags = ["Templates"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @get(
        "/",
        operation_id="ListTemplates",
        summary="The message templates announcements can use",
        description="The catalogue of the employer's WhatsApp Business Account (its own number's, else the "
        "installation's), as Graph listed it at the last sync; read from Graph on first use and hourly. Approved "
        "templates only, unless `status=all`. `preview` shows the text with its placeholders.",
        responses=problems(
            401,
            (409, "The catalogue could not be read from WhatsApp, or the server has no WHATSAPP_WABA_ID"),
            (422, "A `status` other than `approved` or `all`"),
        ),
        operation_class=ProblemOperation,
    )
    async def list_templates(
        self,
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        status: Annotated[Literal["approved", "all"], Parameter(required=False)] = "approved",
    ) -> contracts.Page[contracts.Template]:
        items = await service.listing(
            db_session, state.graph_http, state.settings, principal.employer_id, all_statuses=status == "all"
        )
        await db_session.commit()
        return contracts.Page(items=items)

    @post(
        "/sync",
        status_code=200,
        operation_id="SyncTemplates",
        summary="Read the template catalogue from WhatsApp now",
        description="After creating or editing templates in WhatsApp Manager. 409 when Graph refuses (a bad "
        "token, an unknown account) or cannot be reached.",
        responses=problems(
            401, (409, "WhatsApp refused or could not be reached, or the server has no WHATSAPP_WABA_ID")
        ),
        operation_class=ProblemOperation,
    )
    async def sync_templates(
        self, state: AppState, principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]
    ) -> contracts.SyncResult:
        synced = await service.sync(db_session, state.graph_http, state.settings, principal.employer_id)
        await db_session.commit()
        return contracts.SyncResult(synced=synced)
