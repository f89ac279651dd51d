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
from bot.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, next_cursor


@get(
    "/messages",
    operation_id="ListMessages",
    tags=["Inbox"],
    summary="Inbound employee messages, newest first",
    responses=problems(401, (422, "A `limit` outside 1–500 or a `cursor` this API did not return")),
    operation_class=ProblemOperation,
)
async def list_messages(
    principal: NamedDependency[Principal],
    db_session: NamedDependency[AsyncSession],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, QueryParameter(required=False)] = None,
) -> contracts.Page[contracts.InboundMessage]:
    params = {"employer_id": principal.employer_id, "after": decode_cursor(cursor), "n": limit + 1}
    rows = (await db_session.execute(query("inbox_page"), params)).mappings().all()
    items = [contracts.InboundMessage(**dict(r)) for r in rows]
    return contracts.Page(items=items[:limit], next_cursor=next_cursor([i.id for i in items], limit))
