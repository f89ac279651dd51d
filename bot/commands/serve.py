"""`jem-bot serve`: the API and the webhook under uvicorn, with the dispatcher unless `--no-dispatcher`."""

from __future__ import annotations

import argparse

from bot.runtime import check_listen_address, listen_settings, preflight, stop_signals_exit_zero
from bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: JEM_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: JEM_PORT or 8000)")
    parser.add_argument("--no-dispatcher", action="store_true", help="serve HTTP only; run `jem-bot worker` separately")
    parser.add_argument("--simulator", action="store_true", help="send to the built-in WhatsApp simulator")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.server import serve

    settings = listen_settings(settings, args.host, args.port)
    if not args.simulator:
        settings.require_whatsapp(simulator_flag=True)
    check_listen_address(settings.host, settings.port)
    url = preflight(settings)
    with stop_signals_exit_zero():
        serve(settings, database_url=url, dispatcher=not args.no_dispatcher, simulator=args.simulator)
