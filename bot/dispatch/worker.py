"""`jem-bot worker`: a standalone dispatcher process; SIGTERM/SIGINT stop it cleanly (exit 0)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=None, help="in-flight sends")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.cli import preflight
    from bot.logs import configure_logging

    settings.require_whatsapp()
    url = preflight(settings)
    configure_logging()
    asyncio.run(_main(settings, url, getattr(args, "concurrency", None)))


async def _main(settings: Settings, url: str, concurrency: int | None) -> None:
    from bot.db.engine import make_engine, make_sessionmaker
    from bot.dispatch.dispatcher import Dispatcher
    from bot.graph.client import GraphClient, make_http_client

    engine = make_engine(url)
    http = make_http_client(settings)
    graph = GraphClient(
        http,
        api_url=settings.whatsapp_api_url,
        phone_number_id=settings.whatsapp_phone_number_id,
        access_token=settings.whatsapp_access_token,
        template=settings.whatsapp_template,
    )
    d = Dispatcher(settings, make_sessionmaker(engine), graph, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, d.stop)
    try:
        await d.run()
    finally:
        await http.aclose()
        await engine.dispose()
