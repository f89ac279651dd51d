"""Periodic housekeeping: what is kept, and for how long.

* Webhook dedup rows: 8 days. Meta retries a webhook for up to 7 days, so 8 days of keys cover every redelivery.
* Idempotency keys: until their own `expires_at` (≥ 24 h after last use).
* Inbound messages (texts and payloads): `JEM_RETENTION_DAYS` (default 365).
* Dispatcher heartbeat rows: 7 days after the worker stopped or went silent.

It also reads the template catalogues in use again when they are over an hour old.

Every server runs this; the deletes are idempotent, so several servers doing it at once is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query
from bot.ledger import reaper
from bot.settings import Settings
from bot.state import Lifespan, app_state
from bot.templates import service as templates

log = logging.getLogger("jem.maintenance")

INTERVAL_SECONDS = 300.0
WEBHOOK_EVENT_RETENTION_DAYS = 8
WORKER_RETENTION_DAYS = 7


async def purge_idempotency_keys(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        result = await session.execute(query("purge_idempotency_keys"))
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_webhook_events(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        result = await session.execute(query("purge_webhook_events"), {"days": WEBHOOK_EVENT_RETENTION_DAYS})
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_inbound_messages(sessionmaker: async_sessionmaker[AsyncSession], *, days: int) -> int:
    async with sessionmaker() as session:
        result = await session.execute(query("purge_inbound_messages"), {"days": days})
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Purged:
    idempotency_keys: int
    webhook_events: int
    inbound_messages: int
    workers: int

    def __bool__(self) -> bool:
        return any((self.idempotency_keys, self.webhook_events, self.inbound_messages, self.workers))


async def purge_all(sessionmaker: async_sessionmaker[AsyncSession], *, retention_days: int) -> Purged:
    return Purged(
        idempotency_keys=await purge_idempotency_keys(sessionmaker),
        webhook_events=await purge_webhook_events(sessionmaker),
        inbound_messages=await purge_inbound_messages(sessionmaker, days=retention_days),
        workers=await reaper.purge_workers(sessionmaker, days=WORKER_RETENTION_DAYS),
    )


async def _loop(
    sessionmaker: async_sessionmaker[AsyncSession],
    interval: float,
    settings: Settings,
    http: httpx.AsyncClient | None,
) -> None:
    while True:
        try:
            purged = await purge_all(sessionmaker, retention_days=settings.retention_days)
            if purged:
                log.info("purged %s", purged)
        except Exception:  # a database blip must not end housekeeping for the life of the server
            log.exception("maintenance purge failed; retrying next round")
        if http is not None:
            try:
                # Templates approved, edited or deleted in WhatsApp Manager reach the catalogue within the hour.
                await templates.sync_due(sessionmaker, http, settings)
            except Exception:
                log.exception("template catalogue refresh failed; retrying next round")
        await asyncio.sleep(interval)


def maintenance_lifespan(settings: Settings, *, interval: float = INTERVAL_SECONDS) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        state = app_state(app)
        http = getattr(state, "graph_http", None)
        task = asyncio.create_task(_loop(state.sessionmaker, interval, settings, http), name="maintenance")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
