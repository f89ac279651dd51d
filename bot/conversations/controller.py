"""`GET`/`POST /employees/{id}/messages`: the conversation with an employee, and operator replies
(docs/api.md#conversations)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.announcements import idempotency
from bot.auth import Principal
from bot.conversations import service
from bot.errors import ProblemOperation, problems
from bot.pagination import MAX_LIMIT

DEFAULT_LIMIT = 100

LIST_DESCRIPTION = """\
The conversation with one employee, oldest first: their messages (`direction` `in`, `kind` `message`, `type` as
WhatsApp sent it) and ours to them (`out`: announcements with their text or template preview, the bot's replies
such as STOP confirmations, and operator replies, each with its delivery `status`).

A page holds the latest `limit` items; `next_cursor` pages back to older ones.

`window_open`: WhatsApp's 24-hour customer-service window is open (they wrote less than 24 hours ago), so
`POST` may reply with free text until `window_closes_at`.
"""

REPLY_DESCRIPTION = """\
Queues a text reply to the employee; the dispatcher sends it once, from the number they last wrote to (an own
number of yours, or the shared one).

* `text`: 1–4096 characters after trimming (sent trimmed).
* Only inside WhatsApp's 24-hour window (they wrote less than 24 hours ago): otherwise, or if they never wrote,
  409 and nothing is queued; reach them with a template announcement instead. Erased employees: 409.
* Employees who opted out (STOP) may still be answered inside the window: they wrote to you since.

**Idempotency-Key** (optional header) works as on `POST /announcements`: a retry with the same key and body
replays the first answer (`Idempotent-Replayed: true`) and never queues a second reply; the same key with
another body or on another path is a 422; while the first is still running, 409 with `Retry-After`. A refused
request (404, 409, 422) does not keep its key.
"""

Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT} (default {DEFAULT_LIMIT})")
]
Cursor = Annotated[str | None, QueryParameter(required=False, description="`next_cursor` of the previous page")]


class ConversationController(Controller):
    path = "/employees/{employee_id:int}/messages"
    tags = ["Employees"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @get(
        "/",
        operation_id="GetConversation",
        summary="The conversation with an employee, oldest first, and the 24-hour window",
        description=LIST_DESCRIPTION,
        responses=problems(401, 404, (422, "A `limit` outside 1–500 or a `cursor` this API did not return")),
        operation_class=ProblemOperation,
    )
    async def get_conversation(
        self,
        employee_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> contracts.Conversation:
        before = service.decode_cursor(cursor)
        return await service.conversation(db_session, principal.employer_id, employee_id, before=before, limit=limit)

    @post(
        "/",
        status_code=202,
        operation_id="ReplyToEmployee",
        summary="Reply to an employee inside the 24-hour window (Idempotency-Key supported)",
        description=REPLY_DESCRIPTION,
        responses={
            202: ResponseSpec(contracts.Reply, description="Queued (also when replayed); sent once by the dispatcher"),
            **problems(
                400,
                401,
                404,
                (
                    409,
                    "Outside the 24-hour window (or they never wrote): WhatsApp only allows a template; the employee "
                    "was erased; or the same Idempotency-Key is still being processed (`Retry-After: 1`)",
                ),
                413,
                (422, "`text` empty or over 4096 characters, or the Idempotency-Key was used with another request"),
            ),
        },
        operation_class=ProblemOperation,
    )
    async def reply(
        self,
        request: Request[Any, Any, Any],
        employee_id: FromPath[int],
        data: JSONBody[contracts.ReplyIn],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="1–255 visible ASCII characters; retries with the same key never send twice",
            ),
        ] = None,
    ) -> Response[bytes]:
        return await idempotency.create_once(
            request,
            db_session,
            principal.employer_id,
            idempotency_key,
            lambda: service.reply(db_session, principal.employer_id, employee_id, data),
            status_code=202,
            # The same key and body sent to another employee is another request (a 422), never a replay of this one.
            path=request.url.path.rstrip("/"),
        )
