"""The application's state, typed: what `create_app` and its lifespans put on `app.state`.

Handlers take `state: AppState` (Litestar hands them the app's state object as that type); lifespans read it
through `app_state(app)`. Either way mypy sees every attribute's type.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol, cast

from litestar import Litestar
from litestar.datastructures import State

if TYPE_CHECKING:
    import asyncpg
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from bot.db.embedded import EmbeddedServer
    from bot.ledger.tracker import TrackerSource
    from bot.metrics import Metrics
    from bot.settings import Settings


# A part of the app that runs beside it (the dispatcher, housekeeping, the simulator): set up before the app
# serves, torn down after.
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


class Describable(Protocol):
    """What `/health` needs of a dispatcher running inside `serve`."""

    def describe(self) -> str: ...


class AppState(State):
    settings: Settings
    metrics: Metrics
    # Set by the database lifespan, before the app serves anything.
    database_url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # The webhook's hot path: plain asyncpg, one round trip per body of statuses.
    pg: asyncpg.Pool
    trackers: TrackerSource
    embedded: EmbeddedServer | None
    # For the API's own calls to Graph (template catalogue, media upload); sends go through the dispatcher's.
    graph_http: httpx.AsyncClient
    # Set by the dispatcher lifespan when `serve` runs one.
    dispatcher: Describable | None


def app_state(app: Litestar) -> AppState:
    """The app's state as create_app built it (an AppState instance)."""
    return cast("AppState", app.state)
