"""HTTP endpoints for reminders (docs/api.md#reminders): POST /announcements/{id}/remind and the audience preview."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, HeaderParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.announcements import idempotency, reminders
from bot.auth import Principal
from bot.errors import ProblemOperation, problems
from bot.pagination import known_id
from bot.state import AppState
from bot.templates.service import Lookup

REMIND_DESCRIPTION = """\
Creates a new announcement (`reminder_of` the original) for the original's employees who were reached (`sent`,
`delivered` or `read`) and have not acknowledged it or any reminder of it, who are still active and not opted out.
That audience is decided when the reminder is sent (at `send_time`), not now: whoever acknowledges meanwhile is
not reminded. Each employee gets a reminder at most once.

* `message` / `template`: as for POST /announcements; both absent means the original's text prefixed with
  "Reminder: " (a template announcement's template again).
* `send_time`: as for POST /announcements; absent means now.

409 when the original has not been sent yet (`scheduled`), or was cancelled before anything was sent.
`Idempotency-Key` works as for POST /announcements (a key is for one request: the path counts as part of it).
"""

REMIND_EXAMPLES = [
    Example(summary='The original\'s text prefixed with "Reminder: ", now', value={}),
    Example(
        summary="Own text, tomorrow morning",
        value={"message": "Please confirm the fire drill.", "send_time": "2026-12-02T08:00:00+02:00"},
    ),
]


class ReminderController(Controller):
    path = "/announcements"
    tags = ["Announcements"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @post(
        "/{announcement_id:int}/remind",
        status_code=201,
        operation_id="RemindAnnouncement",
        summary="Remind those reached who have not acknowledged (Idempotency-Key supported)",
        description=REMIND_DESCRIPTION,
        responses={
            201: ResponseSpec(contracts.Announcement, description="The reminder (also when replayed)"),
            **problems(
                400,
                401,
                404,
                (
                    409,
                    "The original has not been sent yet or was cancelled before anything was sent; or the same "
                    "Idempotency-Key is still being processed (`Retry-After: 1`)",
                ),
                413,
                (422, "Validation failed (`errors` names every invalid field), or the Idempotency-Key was reused"),
            ),
        },
        operation_class=ProblemOperation,
    )
    async def remind(
        self,
        request: Request[Any, Any, Any],
        announcement_id: FromPath[int],
        data: Annotated[contracts.ReminderIn, Body(examples=REMIND_EXAMPLES)],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="1–255 visible ASCII characters; retries with the same key never create twice",
            ),
        ] = None,
    ) -> Response[bytes]:
        known_id(announcement_id, "announcement")
        lookup = Lookup(state.graph_http, state.settings)
        return await idempotency.create_once(
            request,
            db_session,
            principal.employer_id,
            idempotency_key,
            lambda: reminders.create(
                db_session, principal.employer_id, principal.token_id, announcement_id, data, lookup
            ),
            status_code=201,
            # The same body to another announcement (or to POST /announcements) is another request: the key must
            # not replay this one's answer there.
            path=request.url.path,
        )

    @get(
        "/{announcement_id:int}/reminder-audience",
        operation_id="GetReminderAudience",
        summary="How many employees a reminder sent now would reach",
        description="Those the announcement reached (`sent`, `delivered` or `read`) who have acknowledged neither it "
        "nor any reminder of it, and are still active and not opted out. 0 for an announcement not sent yet.",
        responses=problems(401, 404),
        operation_class=ProblemOperation,
    )
    async def reminder_audience(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.ReminderAudience:
        known_id(announcement_id, "announcement")
        return await reminders.audience(db_session, principal.employer_id, announcement_id)
