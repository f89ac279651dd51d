"""Request-scoped dependencies: a database session per request and the calling employer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot.auth import Principal, authenticate


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    # Handlers commit explicitly; leaving the block without a commit rolls everything back.
    async with state.sessionmaker() as session:
        yield session


async def provide_principal(
    request: Request[Any, Any, Any],
    db_session: NamedDependency[AsyncSession],
    authorization: Annotated[str | None, HeaderParameter(name="authorization", required=False)] = None,
) -> Principal:
    principal = await authenticate(db_session, authorization)
    # End the auth read so the handler starts with a clean transaction.
    await db_session.commit()
    return principal


DEPENDENCIES = {
    "db_session": Provide(provide_db_session),
    "principal": Provide(provide_principal),
}
