"""`GET /messages`: the employer's inbox of inbound employee messages (docs/api.md#inbox)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, next_cursor

_PAGE = text(
    """
    SELECT m.id, m.employee_id, e.name AS employee_name, m.type, m.text, m.announcement_id, m.received_at
    FROM inbound_message m LEFT JOIN employee e ON e.id = m.employee_id
    WHERE m.employer_id = :employer_id AND (CAST(:after AS bigint) IS NULL OR m.id < :after)
    ORDER BY m.id DESC LIMIT :n
    """
)


@get("/messages", operation_id="ListMessages", tags=["Inbox"], summary="Inbound employee messages, newest first")
async def list_messages(
    principal: NamedDependency[Principal],
    db_session: NamedDependency[AsyncSession],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, QueryParameter(required=False)] = None,
) -> contracts.Page[contracts.InboundMessage]:
    params = {"employer_id": principal.employer_id, "after": decode_cursor(cursor), "n": limit + 1}
    rows = (await db_session.execute(_PAGE, params)).mappings().all()
    items = [contracts.InboundMessage(**dict(r)) for r in rows]
    return contracts.Page(items=items[:limit], next_cursor=next_cursor([i.id for i in items], limit))
