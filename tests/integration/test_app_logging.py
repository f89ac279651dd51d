"""The running app keeps the masking log handler: Litestar must not swap in its own unmasked one."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.logs import MaskingFormatter, configure_logging
from bot.settings import Settings


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


@pytest.mark.usefixtures("root_handlers")
async def test_startup_keeps_the_masking_root_handler(settings: Settings, db: async_sessionmaker[AsyncSession]) -> None:
    configure_logging()  # what `serve` does before it builds the app
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:  # runs the app's startup, as `serve` does
        assert (await client.get("/health")).status_code == 200
        handlers = logging.getLogger().handlers
        assert handlers, "the root logger lost its handler"
        assert all(isinstance(h.formatter, MaskingFormatter) for h in handlers), handlers
