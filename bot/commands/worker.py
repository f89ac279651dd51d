"""`jem-bot worker`: a standalone dispatcher process; SIGTERM/SIGINT stop it cleanly (exit 0)."""

from __future__ import annotations

import argparse

from bot.runtime import UsageError, preflight
from bot.settings import Settings

MAX_CONCURRENCY = 2_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=None, help="Graph requests in flight (default 200)")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.dispatch.worker import run_event_loop, serve_dispatcher
    from bot.logs import configure_logging

    if args.concurrency is not None and not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1-{MAX_CONCURRENCY}, got {args.concurrency}")
    settings.require_whatsapp()
    url = preflight(settings)
    configure_logging()
    # The stop signals are the dispatcher's own (serve_dispatcher): it finishes the sends in flight, then returns.
    run_event_loop(serve_dispatcher(settings, url, concurrency=args.concurrency))
