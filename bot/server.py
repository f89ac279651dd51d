"""Run the service under uvicorn."""

from __future__ import annotations

import uvicorn

from bot.app import create_app
from bot.logs import configure_logging, uvicorn_log_config
from bot.settings import Settings


def serve(settings: Settings, *, database_url: str, dispatcher: bool, simulator: bool) -> None:
    configure_logging()
    app = create_app(settings, database_url=database_url)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(),
        # Webhooks from Meta and the portal keep connections alive; the defaults are fine otherwise.
        timeout_graceful_shutdown=15,
        lifespan="on",
    )
    uvicorn.Server(config).run()
