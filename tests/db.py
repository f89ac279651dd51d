"""Test databases on a real PostgreSQL: TEST_DATABASE_URL when set, else an embedded server.

Every pytest session gets a database of its own (created here, dropped at the end), so several
sessions (developers, helpers, CI) can run at once against one server without stepping on each other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bot.db.embedded import start_embedded
from bot.settings import normalise_database_url


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def server_url() -> Iterator[str]:
    """A URL of a database on a running server that may be used to create and drop databases."""
    if url := os.environ.get("TEST_DATABASE_URL", "").strip():
        yield normalise_database_url(url)
        return
    with tempfile.TemporaryDirectory(prefix="jem-test-pg-") as tmp:
        server = start_embedded(Path(tmp), database="postgres", cleanup_mode="delete")
        try:
            yield server.url
        finally:
            server.stop()


@contextmanager
def fresh_database(admin_url: str, prefix: str = "jem_test") -> Iterator[str]:
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
