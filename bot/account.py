"""GET /me: which employer a token belongs to."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.db.queries import query
from bot.errors import ProblemOperation, problems


@get(
    "/me",
    operation_id="Me",
    tags=["Account"],
    summary="The employer this token belongs to",
    responses=problems(401),
    operation_class=ProblemOperation,
)
async def me(principal: NamedDependency[Principal], db_session: NamedDependency[AsyncSession]) -> contracts.Me:
    row = (await db_session.execute(query("employer_get"), {"id": principal.employer_id})).one()
    employer = contracts.Employer(id=row.id, slug=row.slug, name=row.name, timezone=row.timezone, language=row.language)
    return contracts.Me(employer=employer)
