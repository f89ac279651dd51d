"""Engines and sessions, built from settings; shared by the app, the dispatcher, the CLI and tests."""

from __future__ import annotations

import errno
import socket
import uuid
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.db.embedded import EmbeddedServer, start_embedded
from bot.settings import Settings


class DatabaseUnavailableError(Exception):
    """The database cannot be reached."""


# asyncpg's connect timeout (make_engine's `timeout`): how long a silent host is waited for.
CONNECT_TIMEOUT_SECONDS = 5


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
        "timeout": CONNECT_TIMEOUT_SECONDS,
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
    # A generic plan is made once, though, with the table sizes of that moment: on a new installation (empty
    # tables) it joined by scanning the whole `delivery` table, and kept doing so as the table grew (measured:
    # 0.24x the throughput, seconds of latency, until the plan was replaced). Every row this statement touches
    # is found by a key, so a sequential scan is never the right plan for it: ruled out for these connections.
    return {"application_name": "jem-bot", "plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}


async def _reset_if_in_transaction(conn: asyncpg.Connection) -> None:
    """asyncpg's default reset (RESET ALL, UNLISTEN *, …) is one more round trip per request, for session state
    this pool's users never set; they run single statements, so only an interrupted transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine, *, source: str | None = "DATABASE_URL") -> None:
    """Connect and run `SELECT 1`; DatabaseUnavailableError says why not (see describe_connection_error)."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise DatabaseUnavailableError(describe_connection_error(exc, engine.url, source=source)) from exc


def describe_connection_error(exc: BaseException, url: URL | str | None = None, *, source: str | None = None) -> str:
    """One line, no credentials: what is wrong with the connection, and with `source` (the setting the URL came
    from, e.g. "DATABASE_URL"), which part of it to fix.

    The drivers say it their way (`ConnectionRefusedError: [Errno 111] Connect call failed (...)`, `gaierror`, a
    DBAPIError wrapping asyncpg's error); the person at the terminal needs the setting, the problem and the fix.
    """
    cause = _root_cause(exc)
    detail = f"{type(cause).__name__}: {_first_line(cause)}"
    if url is None or source is None:
        return _without_dsn(detail)[:300]
    parts = make_url(url) if isinstance(url, str) else url
    socket_dir = parts.query.get("host") if not parts.host else None
    where = f"{parts.host}:{parts.port or 5432}" if parts.host else f"the socket directory {socket_dir or '(default)'}"
    user, database = parts.username or "(default user)", parts.database or "(default)"
    sqlstate = str(getattr(cause, "sqlstate", "") or "")
    if source != "DATABASE_URL":
        explained = f"{source}: cannot connect ({_without_dsn(detail)})"
    elif isinstance(cause, socket.gaierror):
        explained = f"DATABASE_URL: unknown host {parts.host!r} ({cause.strerror}): fix the host in DATABASE_URL"
    elif _refused(cause):
        explained = (f"DATABASE_URL: connection refused at {where}: no PostgreSQL listens there; start it, or fix "
                     "the host and port in DATABASE_URL")  # fmt: skip
    elif isinstance(cause, FileNotFoundError):
        explained = (f"DATABASE_URL: no PostgreSQL socket in {where}: start PostgreSQL, or fix the host in "
                     "DATABASE_URL")  # fmt: skip
    elif isinstance(cause, TimeoutError):
        explained = (f"DATABASE_URL: no answer from {where} within {CONNECT_TIMEOUT_SECONDS} s: check that a "
                     "PostgreSQL server listens there (the host and port in DATABASE_URL) and that no firewall "
                     "drops the connection")  # fmt: skip
    elif sqlstate.startswith("28"):
        explained = (f"DATABASE_URL: authentication failed for user {user!r} at {where} ({_first_line(cause)}): "
                     "fix the user name or password in DATABASE_URL")  # fmt: skip
    elif sqlstate == "3D000":
        explained = (f"DATABASE_URL: database {database!r} does not exist at {where}: create it (createdb "
                     f"{database}) or fix the database name in DATABASE_URL")  # fmt: skip
    else:
        explained = f"DATABASE_URL: cannot connect to {where} ({_without_dsn(detail)}): check DATABASE_URL"
    return explained[:400]


def _root_cause(exc: BaseException) -> BaseException:
    """The driver's own error under SQLAlchemy's wrappers (`DBAPIError.orig`, then `__cause__`)."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "orig", None) or current.__cause__
        if not isinstance(inner, BaseException):
            break
        current = inner
    return current


def _refused(exc: BaseException) -> bool:
    # "localhost" may be tried on ::1 and 127.0.0.1: asyncpg then raises one OSError for both, without an errno.
    return isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError) and (exc.errno == errno.ECONNREFUSED or "Connect call failed" in str(exc))
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"


def _without_dsn(message: str) -> str:
    # asyncpg and OSError messages can echo the DSN, password included; keep only what explains the failure.
    return "connection refused or invalid URL" if "@" in message and "://" in message else message
