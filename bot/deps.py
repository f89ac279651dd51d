"""Request-scoped dependencies: a database session per request and the calling employer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request
from litestar.di import Provide
from litestar.params import HeaderParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot.auth import Principal, authenticate
from bot.state import AppState


async def provide_db_session(state: AppState) -> AsyncIterator[AsyncSession]:
    # Handlers commit explicitly; leaving the block without a commit rolls everything back.
    async with state.sessionmaker() as session:
        yield session


async def provide_principal(
    request: Request[Any, Any, Any],
    state: AppState,
    authorization: Annotated[str | None, HeaderParameter(name="authorization", required=False)] = None,
) -> Principal:
    # The lookup runs on a session of its own, closed here, never on the request's `db_session`. Litestar
    # cleans up yield dependencies only once every dependency has resolved: when this one raises (a 401),
    # the `db_session` generator is dropped without being closed. Had the lookup used that session, its
    # connection would stay checked out until the garbage collector finalised the generator, often after
    # the app's engine was disposed, and asyncpg reported the socket as unclosed.
    async with state.sessionmaker() as session:
        return await authenticate(session, authorization)


DEPENDENCIES = {
    "db_session": Provide(provide_db_session),
    "principal": Provide(provide_principal),
}
