"""Run the dispatcher inside `serve`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from bot.settings import Settings


def dispatcher_lifespan(settings: Settings) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        from bot.dispatch.dispatcher import Dispatcher
        from bot.dispatch.worker import own_number_senders
        from bot.graph.client import GraphClient, make_http_client

        # One connection per send in flight: fewer would queue sends behind each other in the pool.
        http = make_http_client(settings, max_in_flight=settings.dispatcher_concurrency)
        graph = GraphClient.for_settings(http, settings, metrics=app.state.metrics)
        # Behind PgBouncer's transaction pooling a LISTEN would hear nothing: poll only.
        listen_url = None if settings.pgbouncer else app.state.database_url
        d = Dispatcher(
            settings,
            app.state.sessionmaker,
            graph,
            metrics=app.state.metrics,
            listen_url=listen_url,
            sender_factory=own_number_senders(http, settings, app.state.metrics),
        )
        app.state.dispatcher = d
        task = asyncio.create_task(d.run())
        try:
            yield
        finally:
            d.stop()
            await task
            await http.aclose()

    return lifespan
