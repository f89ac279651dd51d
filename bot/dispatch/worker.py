"""A standalone dispatcher (`jem-bot worker`, the benchmarks' workers): SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from bot.settings import Settings

if TYPE_CHECKING:
    from bot.dispatch.dispatcher import Dispatcher, SenderFactory
    from bot.graph.client import GraphClient
    from bot.graph.protocol import GraphSender

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """uvloop where it is installed: measured by `jem-bot bench fanout`, it takes a sizeable share of the
    event loop's own CPU per send off the one core a worker runs on."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, where uvloop does not exist
        return asyncio.run(main)
    return uvloop.run(main)


def own_number_senders(http: Any, settings: Settings, metrics: Any) -> SenderFactory:
    """Graph clients for employers' own numbers, sharing the dispatcher's connection pool (one host: Graph)."""
    from bot.graph.client import GraphClient

    def make(phone_number_id: str, access_token: str) -> GraphSender:
        return GraphClient.for_number(
            http, settings, phone_number_id=phone_number_id, access_token=access_token, metrics=metrics
        )

    return make


@asynccontextmanager
async def open_dispatcher(
    settings: Settings,
    url: str,
    *,
    concurrency: int | None = None,
    metrics: Any = None,
    wrap_graph: Callable[[GraphClient], GraphSender] | None = None,
) -> AsyncIterator[Dispatcher]:
    """A Dispatcher with its own engine and Graph client, closed on exit. ``wrap_graph`` lets the benchmark
    time each send without a second code path."""
    from bot.db.engine import make_engine, make_sessionmaker
    from bot.dispatch.dispatcher import Dispatcher
    from bot.graph.client import GraphClient, make_http_client

    concurrency = concurrency or settings.dispatcher_concurrency
    # No pre-ping: every dispatcher statement is retried on failure, so a dead pooled connection costs one retry.
    engine = make_engine(url, pool_size=5, max_overflow=10, pgbouncer=settings.pgbouncer, pre_ping=False)
    # One connection per send in flight: fewer would queue sends behind each other in the pool.
    http = make_http_client(settings, max_in_flight=concurrency)
    graph = GraphClient.for_settings(http, settings, metrics=metrics)
    try:
        yield Dispatcher(
            settings,
            make_sessionmaker(engine),
            graph if wrap_graph is None else wrap_graph(graph),
            metrics=metrics,
            concurrency=concurrency,
            # Behind PgBouncer's transaction pooling a LISTEN would hear nothing: poll only.
            listen_url=None if settings.pgbouncer else url,
            sender_factory=own_number_senders(http, settings, metrics),
        )
    finally:
        await http.aclose()
        await engine.dispose()


async def serve_dispatcher(
    settings: Settings,
    url: str,
    *,
    concurrency: int | None = None,
    wrap_graph: Callable[[GraphClient], GraphSender] | None = None,
) -> Dispatcher:
    """Run a dispatcher until SIGTERM/SIGINT, then let it finish its in-flight sends; returns it (for its counts)."""
    async with open_dispatcher(settings, url, concurrency=concurrency, wrap_graph=wrap_graph) as d:
        # Modules and the dispatcher live as long as the process, yet every full garbage collection would walk
        # them again: out of its sight from here on (~25 µs of CPU per send at 1,000 msg/s, `bench fanout`).
        gc.freeze()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, d.stop)
        try:
            await d.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return d
