"""`jem-bot serve`: the API and the webhook under uvicorn, with the dispatcher unless `--no-dispatcher`."""

from __future__ import annotations

import argparse

from bot.runtime import UsageError, check_listen_address, listen_settings, preflight, stop_signals_exit_zero
from bot.settings import MAX_WORKERS, Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: JEM_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: JEM_PORT or 8000)")
    parser.add_argument("--no-dispatcher", action="store_true", help="serve HTTP only; run `jem-bot worker` separately")
    parser.add_argument("--simulator", action="store_true", help="send to the built-in WhatsApp simulator")
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port (default: JEM_WORKERS, else one per core); the dispatcher runs once",
    )


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.server import serve

    settings = listen_settings(settings, args.host, args.port)
    if args.workers is not None:
        if not 1 <= args.workers <= MAX_WORKERS:
            raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {args.workers}")
        settings = settings.replace(workers=args.workers)
    if not args.simulator:
        settings.require_whatsapp(simulator_flag=True)
    check_listen_address(settings.host, settings.port)
    url = preflight(settings)
    if args.simulator:
        from bot.simulator.embedded import simulator_settings

        settings = simulator_settings(settings)
    with stop_signals_exit_zero():
        serve(
            settings,
            database_url=url,
            dispatcher=not args.no_dispatcher,
            simulator=args.simulator,
            workers=settings.server_processes,
        )
