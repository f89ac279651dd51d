"""What the `jem-bot` commands share: the errors that set the exit status, the database (its URL, the preflight
check, a short-lived engine), the listen address, stopping on SIGTERM/SIGINT, and creating employers and tokens.

Commands, the benchmarks and the simulator import these from here, never from `bot.cli` or `bot.commands`: those
import them, so the other direction would be an import cycle (the import-linter layers contract in
pyproject.toml keeps it that way). SQLAlchemy, Alembic and the web framework are imported inside the
functions that use them: `bot.cli` imports this module on every run, `--help` included, and they cost most of a
second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from bot.settings import ConfigError, Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2."""


class CommandFailedError(Exception):
    """The command could not do its job: exit status 1."""


class Command(Protocol):
    """A command's module (or a benchmark's): its options, and what it does with them."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, settings: Settings, args: argparse.Namespace) -> None: ...


# --- the database ----------------------------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded PostgreSQL's URL (started here if it is not running; stopped at exit)."""
    from bot.db.engine import DatabaseUnavailableError, resolve_database_url

    try:
        url, _server = resolve_database_url(settings)
    except Exception as exc:
        # pg_ctl and initdb failures are pages of output; the first line says what went wrong.
        raise DatabaseUnavailableError(f"could not start the embedded PostgreSQL: {exc}".splitlines()[0]) from exc
    return url


def database_source(settings: Settings) -> str:
    """Where the database URL comes from, as errors name it: the setting to fix, or the embedded server."""
    return "DATABASE_URL" if settings.database_url else f"the embedded PostgreSQL in {settings.data_dir}"


def run_with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[T]], *, source: str = "DATABASE_URL") -> T:
    """Run `work` on a small engine that has answered a ping, so an unreachable database is one clear error naming
    `source` (see database_source), what is wrong and how to fix it."""
    from bot.db.engine import make_engine, ping

    async def run() -> T:
        # A command runs a few statements once: reusing prepared statements gains nothing, and without reuse it
        # works through PgBouncer's transaction pooling too, whatever JEM_PGBOUNCER says.
        engine = make_engine(url, pool_size=2, max_overflow=0, pgbouncer=True)
        try:
            await ping(engine, source=source)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def preflight(settings: Settings) -> str:
    """Refuse to start on an unreachable database, a schema that is behind, or employers' own numbers without
    the JEM_SECRET_KEY that opens their tokens; returns the URL."""
    from bot.db.migrate import check_schema

    async def check(engine: AsyncEngine) -> None:
        await check_schema(engine)
        await check_secret_key(engine, settings)

    url = database_url(settings)
    run_with_engine(url, check, source=database_source(settings))
    return url


async def check_secret_key(engine: AsyncEngine, settings: Settings) -> None:
    """Own numbers' tokens are sealed with JEM_SECRET_KEY: without it (or with another one) they cannot be sent
    from, so a server or worker refuses to start rather than let those employers' deliveries wait unseen."""
    from bot.crypto import SecretKeyError, TokenBox
    from bot.db.queries import query

    async with engine.connect() as conn:
        sealed = (await conn.execute(query("sender_any_token"))).scalar()
        kept_opt_outs = bool((await conn.execute(query("opt_out_hash_any"))).scalar())
    if kept_opt_outs and not settings.secret_key:
        # Erased employees' opt-outs are kept as hashes keyed by it: without it a re-import of such a number would
        # not come back opted out, and someone who said STOP would be messaged again (docs/architecture.md#erasure).
        raise ConfigError("opt-outs of erased employees are kept with JEM_SECRET_KEY: set it (the one they were "
                          "stored with)")  # fmt: skip
    if sealed is None:
        return
    if not settings.secret_key:
        raise ConfigError("employers have their own WhatsApp numbers: set JEM_SECRET_KEY (the one their tokens were "
                          "stored with)")  # fmt: skip
    try:
        TokenBox(settings.secret_key).open(bytes(sealed))
    except SecretKeyError as exc:
        raise ConfigError(str(exc)) from None


async def find_employer(conn: AsyncConnection, slug: str) -> int | None:
    """The employer's id, or None if no employer has that slug."""
    from bot.db.queries import query

    employer_id = (await conn.execute(query("employer_find"), {"s": slug})).scalar()
    return None if employer_id is None else int(employer_id)


async def create_employer(
    conn: AsyncConnection, *, slug: str, name: str, timezone: str, language: str | None = None
) -> int | None:
    """The new employer's id, or None if the slug is taken (then nothing changes). The caller validates."""
    from bot.db.queries import query

    params = {"s": slug, "n": name, "t": timezone, "lang": language}
    created = await conn.execute(query("employer_create"), params)
    employer_id = created.scalar()
    return None if employer_id is None else int(employer_id)


async def create_token(conn: AsyncConnection, employer_id: int, *, label: str | None) -> str:
    """A new API token for the employer. Only its hash is stored: the returned value is the one copy there is."""
    # Imported here: bot.auth brings in the web framework.
    from bot.auth import generate_token, hash_token
    from bot.db.queries import query

    token = generate_token()
    await conn.execute(query("token_create"), {"e": employer_id, "h": hash_token(token), "l": label})
    return token


# --- listening -------------------------------------------------------------------------------------------------


def listen_settings(settings: Settings, host: str | None, port: int | None) -> Settings:
    """`--host`/`--port` over JEM_HOST/JEM_PORT. Then `check_listen_address`: the two are apart so that `serve`
    can say what is missing from its WhatsApp settings first, whatever else is listening on its port."""
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--port must be 1-65535, got {port}")
    return settings.replace(host=host or settings.host, port=settings.port if port is None else port)


def check_listen_address(host: str, port: int, *, environment: bool = True) -> None:
    """uvicorn reports an unknown host or a taken port as several log lines, after the database and the app have
    started; say it in one line (exit 2), before anything starts. `environment=False` leaves JEM_HOST/JEM_PORT out
    of the hint: they do not configure the simulator (they say where `serve` listens)."""
    try:
        bind_probe(host, port)
    except socket.gaierror as exc:
        hint = "check --host or JEM_HOST" if environment else "check --host"
        raise UsageError(f"cannot listen on host {host!r} ({exc.strerror}): {hint}") from None
    except OSError as exc:
        hint = "pass --port or set JEM_PORT to a free port" if environment else "pass --port with a free port"
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): {hint}") from None


def bind_probe(host: str, port: int) -> int:
    """Bind a throwaway socket where a server is about to listen and return the port it got (the kernel picks one
    for port 0). Raises socket.gaierror for an unknown host and OSError for a port that is taken."""
    if not 0 <= port < 65536:
        # getaddrinfo would wrap it round (65536 becomes 0: any port) instead of refusing it.
        raise OSError(f"port {port} is out of range")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The option uvicorn sets, so a port in TIME_WAIT from a previous run is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        return int(probe.getsockname()[1])


# --- stopping --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_signals_exit_zero() -> Iterator[None]:
    """Around a uvicorn server: SIGTERM or SIGINT (Ctrl+C) ends the process with status 0 once it has stopped.

    uvicorn shuts down gracefully on either signal, then re-raises it with the handler that was in place before
    it started. With the default handlers the process would die by the signal (status -15) or print an
    "interrupted" error (130) although everything stopped cleanly, and on SIGTERM the embedded PostgreSQL's exit
    hook would not run. A stop on request is a success; SystemExit lets the exit hooks run.
    """
    previous = {sig: signal.signal(sig, _exit_zero) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)
