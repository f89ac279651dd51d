"""The application factory: everything the service needs is built here from Settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar

from bot.account import me
from bot.announcements.controller import AnnouncementController
from bot.announcements.export import export_deliveries
from bot.announcements.reminders_controller import ReminderController
from bot.apidocs import docs_assets_router, openapi_config
from bot.conversations.controller import ConversationController
from bot.db.engine import make_engine, make_pg_pool, make_sessionmaker, resolve_database_url
from bot.db.migrate import check_schema
from bot.deps import DEPENDENCIES
from bot.employees.controller import EmployeeController
from bot.errors import EXCEPTION_HANDLERS
from bot.health import health, metrics
from bot.inbox.controller import list_messages
from bot.ledger.tracker import TrackerSource
from bot.media.controller import upload_media
from bot.metrics import Metrics
from bot.senders.controller import SenderController
from bot.settings import Settings
from bot.state import AppState, Lifespan, app_state
from bot.templates.controller import TemplateController
from bot.webhook.controller import WebhookController

log = logging.getLogger("jem.app")

# Meta's payloads reach 3 MB; employee imports of 10,000 rows stay well below this.
MAX_BODY_BYTES = 8 * 1024 * 1024


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    check_schema_on_start: bool = True,
    extra_lifespans: Sequence[Lifespan] = (),
) -> Litestar:
    """Build the service.

    `database_url` overrides the settings (tests pass the per-session database); the dispatcher and other
    background parts join through `extra_lifespans` so that a plain `create_app(settings)` starts nothing
    in the background (every test client would otherwise start a dispatcher).
    """

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        url, embedded = (
            (database_url, None) if database_url else await asyncio.to_thread(resolve_database_url, settings)
        )
        engine = make_engine(url, pgbouncer=settings.pgbouncer)
        state = app_state(app)
        state.engine = engine
        state.sessionmaker = make_sessionmaker(engine)
        state.trackers = TrackerSource(state.sessionmaker)
        state.embedded = embedded
        state.database_url = url
        try:
            if check_schema_on_start:
                await check_schema(engine)
            state.pg = await make_pg_pool(url, pgbouncer=settings.pgbouncer)
            try:
                async with httpx.AsyncClient(
                    timeout=httpx.Timeout(settings.graph_timeout, connect=min(5.0, settings.graph_timeout)),
                    follow_redirects=False,
                ) as graph_http:
                    state.graph_http = graph_http
                    yield
            finally:
                await state.pg.close()
        finally:
            await engine.dispose()

    route_handlers: list[Any] = [
        health,
        metrics,
        me,
        SenderController,
        TemplateController,
        upload_media,
        EmployeeController,
        AnnouncementController,
        ReminderController,
        export_deliveries,
        WebhookController,
        list_messages,
        ConversationController,
        docs_assets_router(),
    ]

    return Litestar(
        route_handlers=route_handlers,
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[database, *extra_lifespans],
        state=AppState({"settings": settings, "metrics": Metrics(), "dispatcher": None}),
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=openapi_config(),
        debug=False,
        # Litestar's default logging config replaces the root handlers at startup with its own, unmasked
        # format: phone numbers and wamids in our log lines would reach the log. `bot.logs` owns logging.
        logging_config=None,
    )
