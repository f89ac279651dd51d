"""Run the service under uvicorn: API + webhook, plus the dispatcher and the simulator when asked."""

from __future__ import annotations

import uvicorn

from bot.app import create_app
from bot.logs import configure_logging, uvicorn_log_config
from bot.settings import Settings
from bot.state import Lifespan


def build_lifespans(settings: Settings, *, dispatcher: bool) -> list[Lifespan]:
    """Background parts of `serve`; imported lazily so `serve --no-dispatcher` needs none of them."""
    from bot.maintenance import maintenance_lifespan

    lifespans: list[Lifespan] = [maintenance_lifespan(settings)]
    if dispatcher:
        from bot.dispatch.lifespan import dispatcher_lifespan

        lifespans.append(dispatcher_lifespan(settings))
    return lifespans


def serve(settings: Settings, *, database_url: str, dispatcher: bool, simulator: bool) -> None:
    configure_logging()
    lifespans: list[Lifespan] = []
    if simulator:
        # The simulator plays WhatsApp for this server: it fills in the Graph URL and credentials and
        # posts its callbacks back to our own webhook.
        from bot.simulator.embedded import simulator_lifespan, simulator_settings

        settings = simulator_settings(settings)
        lifespans.append(simulator_lifespan(settings))
    lifespans += build_lifespans(settings, dispatcher=dispatcher)
    app = create_app(settings, database_url=database_url, extra_lifespans=lifespans)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(),
        timeout_graceful_shutdown=15,
        lifespan="on",
    )
    uvicorn.Server(config).run()
