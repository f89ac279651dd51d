"""Periodic housekeeping: purge expired idempotency keys and webhook dedup rows older than 8 days.

Meta retries a webhook for up to 7 days, so 8 days of dedup keys cover every redelivery. Idempotency keys
carry their own `expires_at` (≥ 24 h after last use). Every server runs this; the deletes are idempotent, so
several servers doing it at once is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import Lifespan
from bot.settings import Settings

log = logging.getLogger("jem.maintenance")

INTERVAL_SECONDS = 300.0
WEBHOOK_EVENT_RETENTION_DAYS = 8


async def purge_idempotency_keys(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        result = await session.execute(text("DELETE FROM idempotency_key WHERE expires_at < now()"))
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_webhook_events(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        result = await session.execute(
            text("DELETE FROM webhook_event WHERE received_at < now() - make_interval(days => :days)"),
            {"days": WEBHOOK_EVENT_RETENTION_DAYS},
        )
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_all(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    return await purge_idempotency_keys(sessionmaker), await purge_webhook_events(sessionmaker)


async def _loop(sessionmaker: async_sessionmaker[AsyncSession], interval: float) -> None:
    while True:
        try:
            keys, events = await purge_all(sessionmaker)
            if keys or events:
                log.info("purged %d idempotency keys and %d webhook events", keys, events)
        except Exception:  # a database blip must not end housekeeping for the life of the server
            log.exception("maintenance purge failed; retrying next round")
        await asyncio.sleep(interval)


def maintenance_lifespan(settings: Settings, *, interval: float = INTERVAL_SECONDS) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(_loop(app.state.sessionmaker, interval), name="maintenance")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
