"""Async Alembic environment.

The URL comes from the caller (`bot.db.migrate` sets `sqlalchemy.url`), or from the environment like the
service (DATABASE_URL, else the embedded server) when `alembic` is run by hand. When a caller passes a
live connection in `config.attributes["connection"]`, migrations run on it (Alembic's connection-sharing
recipe), which is how async code migrates without nesting event loops.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from bot.db import models  # noqa: F401  (registers every table on the metadata)
from bot.db.base import Base

config = context.config
target_metadata = Base.metadata

# Serialises concurrent `migrate` runs (several workers starting at once); any constant works.
MIGRATION_LOCK_ID = 0x6A656D  # "jem"


def do_run_migrations(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from bot.db.engine import resolve_database_url
    from bot.settings import Settings

    resolved, _server = resolve_database_url(Settings.from_env())
    return resolved


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
