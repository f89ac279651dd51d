"""Engines and sessions, built from settings; shared by the app, the dispatcher, the CLI and tests."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.db.embedded import EmbeddedServer, start_embedded
from bot.settings import Settings


class DatabaseUnavailableError(Exception):
    """The database cannot be reached."""


def resolve_database_url(settings: Settings) -> tuple[str, EmbeddedServer | None]:
    """DATABASE_URL when set, else start (or join) the embedded server under JEM_DATA_DIR."""
    if settings.database_url:
        return settings.database_url, None
    server = start_embedded(settings.data_dir)
    return server.url, server


def make_engine(
    url: str, *, pool_size: int = 20, max_overflow: int = 20, pgbouncer: bool = False, pre_ping: bool = True
) -> AsyncEngine:
    """``pre_ping`` costs a round trip per checkout; a caller that retries every statement anyway (the dispatcher)
    does without it, and a connection a restart killed is then replaced on the failed attempt."""
    connect_args: dict[str, Any] = {
        "timeout": 5,
        "command_timeout": 60,
        "server_settings": {"application_name": "jem-bot"},
    }
    if pgbouncer:
        connect_args |= _PGBOUNCER_CONNECT_ARGS
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        # A request must fail fast when PostgreSQL is gone (health answers 503), not hang.
        pool_timeout=10,
        connect_args=connect_args,
    )


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


# PgBouncer in transaction-pooling mode gives each transaction whichever server connection is free: a statement
# prepared under a fixed name in one transaction may be missing, or already there, in the next. So no statement
# is reused: SQLAlchemy names each one uniquely and caches none, and asyncpg keeps no cache of its own.
_PGBOUNCER_CONNECT_ARGS: dict[str, Any] = {
    "prepared_statement_name_func": _unique_statement_name,
    "prepared_statement_cache_size": 0,
    "statement_cache_size": 0,
}


def asyncpg_dsn(url: str) -> str:
    """The same database as a SQLAlchemy URL, as a DSN asyncpg connects to by itself."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def make_pg_pool(url: str, *, max_size: int = 10, pgbouncer: bool = False) -> asyncpg.Pool:
    """A plain asyncpg pool beside the engine, for the one path too hot for SQLAlchemy's session machinery:
    Meta's status webhooks (bot/webhook/service.py). Same server, same timeouts; no pre-ping round trip."""
    return await asyncpg.create_pool(
        asyncpg_dsn(url),
        # Connections are made when first needed: the app starts (and /health answers 503) with the database down.
        min_size=0,
        max_size=max_size,
        reset=_reset_if_in_transaction,
        timeout=5,
        command_timeout=60,
        server_settings=_hot_path_settings(pgbouncer),
        statement_cache_size=0 if pgbouncer else 100,
    )


def _hot_path_settings(pgbouncer: bool) -> dict[str, str]:
    if pgbouncer:
        # PgBouncer refuses startup parameters it does not know (1.18: all but a few), and with no statement
        # reused there is no cached plan to keep anyway.
        return {"application_name": "jem-bot"}
    # The status statement is prepared once per connection; left to choose, PostgreSQL re-planned it on every
    # execution (custom plans, for its array parameters): 3.5x the server CPU of the whole POST otherwise.
    return {"application_name": "jem-bot", "plan_cache_mode": "force_generic_plan"}


async def _reset_if_in_transaction(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset (RESET ALL, UNLISTEN *, …) is one more round trip per request, for session state
    this pool's users never set; they run single statements, so only an interrupted transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise DatabaseUnavailableError(describe_connection_error(exc)) from exc


def describe_connection_error(exc: BaseException) -> str:
    """One line, no credentials: the exception type and the first line of its message."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    # asyncpg/OSError messages can echo the DSN; keep only what explains the failure.
    if "@" in message and "://" in message:
        message = "connection refused or invalid DATABASE_URL"
    return f"{type(exc).__name__}: {message}"[:200]
