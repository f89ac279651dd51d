"""Periodic housekeeping (purging expired idempotency keys and old webhook dedup rows).

Placeholder until the announcements issue lands: the lifespan does nothing yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from bot.app import Lifespan
from bot.settings import Settings


def maintenance_lifespan(settings: Settings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        yield

    return lifespan
