"""`GET /messages`: the employer's inbox of inbound employee messages (docs/api.md#inbox)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.db.queries import query
from bot.errors import ProblemOperation, problems
from bot.pagination import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, decode_cursor, next_cursor


@get(
    "/messages",
    operation_id="ListMessages",
    tags=["Inbox"],
    summary="Inbound employee messages, newest first",
    description="`employee_id`: only that employee's messages (none when it is not one of yours). "
    "`acknowledgements=false`: leave out messages that acknowledged an announcement (a tap on its button, a reply "
    "quoting it). `answered`: you replied to the employee (`POST /employees/{id}/messages`) after the message came.",
    responses=problems(
        401,
        (
            422,
            "A `limit` outside 1–500, a `cursor` this API did not return, an `employee_id` that is not a positive "
            "integer, or an `acknowledgements` that is not true or false",
        ),
    ),
    operation_class=ProblemOperation,
)
async def list_messages(
    principal: NamedDependency[Principal],
    db_session: NamedDependency[AsyncSession],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, QueryParameter(required=False)] = None,
    employee_id: Annotated[int | None, QueryParameter(required=False, ge=1, le=MAX_ID)] = None,
    acknowledgements: Annotated[bool, QueryParameter(required=False)] = True,
) -> contracts.Page[contracts.InboundMessage]:
    params = {
        "employer_id": principal.employer_id,
        "after": decode_cursor(cursor),
        "n": limit + 1,
        "acks": acknowledgements,
    }
    statement = query("inbox_page")
    if employee_id is not None:
        # One employee's messages have a statement of their own, on their own index: not a walk through the inbox.
        statement, params["employee_id"] = query("inbox_page_of_employee"), employee_id
    rows = (await db_session.execute(statement, params)).mappings().all()
    items = [contracts.InboundMessage(**dict(r)) for r in rows]
    return contracts.Page(items=items[:limit], next_cursor=next_cursor([i.id for i in items], limit))
