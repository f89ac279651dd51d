"""`jem-bot`: the command line. Errors are one line on stderr: exit 2 for usage/config, 1 for failures."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import re
import signal
import socket
import sys
import zoneinfo
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import DatabaseUnavailableError, make_engine, ping, resolve_database_url
from bot.db.migrate import SchemaBehindError, check_schema, upgrade
from bot.settings import ENVIRONMENT, ConfigError, Settings

T = TypeVar("T")

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class UsageError(Exception):
    """Bad arguments or configuration: exit status 2."""


class CommandFailedError(Exception):
    """The command could not do its job: exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage plus the error; users asked for one line that says what to fix.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _environment_help() -> str:
    width = max(len(name) for name, _, _ in ENVIRONMENT)
    lines = ["environment:"]
    lines += [f"  {name:<{width}}  {meaning} (default: {default})" for name, default, meaning in ENVIRONMENT]
    return "\n".join(lines)


BENCHMARKS = {
    "fanout": "dispatch throughput through the real ledger against the simulator",
    "webhook": "latency of signed webhook POSTs",
    "client": "Graph client throughput against a local server with injected latency",
}


def _extend(parser: argparse.ArgumentParser, module: str) -> None:
    """Let the module that implements a command declare its own options (`add_arguments(parser)`)."""
    try:
        add_arguments = importlib.import_module(module).add_arguments
    except (ModuleNotFoundError, AttributeError):
        return
    add_arguments(parser)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI. With `command` set, only that command's module is asked for extra options: importing
    every module (the benchmarks pull in the Graph client) would cost every `jem-bot` run most of a second."""

    def extend(name: str, parser: argparse.ArgumentParser, module: str) -> None:
        if command is None or command == name:
            _extend(parser, module)

    parser = _Parser(
        prog="jem-bot",
        description="WhatsApp announcements for employers: never twice, never lost.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("migrate", help="apply all database migrations (safe to run twice)")

    serve = sub.add_parser("serve", help="run the API + webhook (+ dispatcher)")
    serve.add_argument("--host", help="listen address (default: JEM_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: JEM_PORT or 8000)")
    serve.add_argument("--no-dispatcher", action="store_true", help="serve HTTP only; run `jem-bot worker` separately")
    serve.add_argument("--simulator", action="store_true", help="send to the built-in WhatsApp simulator")

    worker = sub.add_parser("worker", help="run the dispatcher only (any number, on any number of machines)")
    worker.add_argument("--concurrency", type=int, default=None, help="Graph requests in flight (default 200)")

    employer = sub.add_parser("employer", help="manage employers").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    create_employer = employer.add_parser("create", help="create an employer; prints its id")
    create_employer.add_argument("slug", help="short unique name: lowercase letters, digits, dashes")
    create_employer.add_argument("--name", required=True, help="display name")
    create_employer.add_argument("--timezone", default="UTC", help="IANA zone, e.g. Africa/Johannesburg")

    token = sub.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    create_token = token.add_parser("create", help="print a new API token (only its hash is stored)")
    create_token.add_argument("--employer", required=True, metavar="SLUG", help="the employer's slug")
    create_token.add_argument("--label", help="a note to recognise the token by")

    simulator = sub.add_parser("simulator", help="run the WhatsApp Cloud API simulator")
    extend("simulator", simulator, "bot.simulator.cli")

    demo = sub.add_parser("demo", help="the whole product, running, in one command")
    extend("demo", demo, "bot.demo")

    bench = sub.add_parser("bench", help="benchmarks; print a table, or JSON with --json").add_subparsers(
        dest="action", required=True, metavar="BENCHMARK", parser_class=_Parser
    )
    for kind, text_ in BENCHMARKS.items():
        bench_parser = bench.add_parser(kind, help=text_)
        bench_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        extend("bench", bench_parser, f"bot.bench.{kind}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word (there are no global options besides --help).
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(command).parse_args(words)
    try:
        settings = Settings.from_env()
        handler = COMMANDS[(args.command, getattr(args, "action", None))]
        handler(settings, args)
    except (ConfigError, UsageError, DatabaseUnavailableError, SchemaBehindError) as exc:
        _fail(2, str(exc))
    except CommandFailedError as exc:
        _fail(1, str(exc))
    except KeyboardInterrupt:
        _fail(130, "interrupted")


def _fail(status: int, message: str) -> NoReturn:
    print(f"jem-bot: error: {message}", file=sys.stderr)
    raise SystemExit(status)


# --- database helpers ------------------------------------------------------------------------------


def _database_url(settings: Settings) -> str:
    try:
        url, _server = resolve_database_url(settings)
    except Exception as exc:
        raise DatabaseUnavailableError(f"could not start the embedded PostgreSQL: {exc}".splitlines()[0]) from exc
    return url


def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    return _run_with_engine(_database_url(settings), work)


def _run_with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_engine(url, pool_size=2, max_overflow=0)
        try:
            await ping(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def preflight(settings: Settings) -> str:
    """Refuse to start on an unreachable database or a schema that is behind; returns the URL."""
    url = _database_url(settings)

    async def check() -> None:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            await ping(engine)
            await check_schema(engine)
        finally:
            await engine.dispose()

    asyncio.run(check())
    return url


# --- commands --------------------------------------------------------------------------------------


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> None:
    url = _database_url(settings)

    async def reachable(_engine: AsyncEngine) -> None:
        return None

    _run_with_engine(url, reachable)  # a clear "unreachable" line instead of an Alembic traceback
    try:
        upgrade(url)
    except SQLAlchemyError as exc:
        raise CommandFailedError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    print("database schema is up to date")


def cmd_employer_create(settings: Settings, args: argparse.Namespace) -> None:
    slug, name, tz = args.slug, args.name.strip(), args.timezone
    if not SLUG.fullmatch(slug):
        raise UsageError(
            f"slug {slug!r} must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit"
        )
    if not name:
        raise UsageError("--name must not be empty")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown --timezone {tz!r}: use an IANA name such as Africa/Johannesburg") from None

    async def create(engine: AsyncEngine) -> int:
        await check_schema(engine)
        try:
            async with engine.begin() as conn:
                row = await conn.execute(
                    text("INSERT INTO employer (slug, name, timezone) VALUES (:s, :n, :t) RETURNING id"),
                    {"s": slug, "n": name, "t": tz},
                )
                return int(row.scalar_one())
        except IntegrityError:
            raise CommandFailedError(f"an employer with slug {slug!r} already exists") from None

    print(_with_engine(settings, create))


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> None:
    # Imported here: bot.auth brings in the web framework, which the other commands do not need.
    from bot.auth import generate_token, hash_token

    token = generate_token()

    async def create(engine: AsyncEngine) -> None:
        await check_schema(engine)
        async with engine.begin() as conn:
            employer_id = (
                await conn.execute(text("SELECT id FROM employer WHERE slug = :s"), {"s": args.employer})
            ).scalar()
            if employer_id is None:
                raise UsageError(f"no employer with slug {args.employer!r}: create it with `jem-bot employer create`")
            await conn.execute(
                text("INSERT INTO api_token (employer_id, token_hash, label) VALUES (:e, :h, :l)"),
                {"e": employer_id, "h": hash_token(token), "l": args.label},
            )

    _with_engine(settings, create)
    print(token)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    from bot.server import serve

    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    settings = settings.replace(
        host=args.host or settings.host, port=args.port if args.port is not None else settings.port
    )
    if not args.simulator:
        settings.require_whatsapp(simulator_flag=True)
    _check_listen_address(settings.host, settings.port)
    url = preflight(settings)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal with the handler that was in
    # place before it started; with the default handlers the process would die by the signal (status -15) or
    # print an "interrupted" error even though everything stopped cleanly (and the embedded PostgreSQL's exit
    # hook would not run on SIGTERM). A stop on request is a success: exit 0.
    previous = {sig: signal.signal(sig, _exit_on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve(settings, database_url=url, dispatcher=not args.no_dispatcher, simulator=args.simulator)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_listen_address(host: str, port: int) -> None:
    """uvicorn reports a taken port as several log lines after start-up; say it in one line, before it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on host {host!r} ({exc.strerror}): check --host or JEM_HOST") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The same option uvicorn sets, so a port in TIME_WAIT from a previous run is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port} ({exc.strerror}): pass --port or set JEM_PORT to a free port"
            ) from None


def _exit_on_stop_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _delegate(module: str) -> Callable[[Settings, argparse.Namespace], None]:
    """Commands implemented elsewhere: `module.run(settings, args)`, imported only when used."""

    def handler(settings: Settings, args: argparse.Namespace) -> None:
        name = module if not module.endswith(".") else module + args.action
        try:
            target = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            raise CommandFailedError(
                f"`jem-bot {name.rsplit('.', 1)[-1]}` is not yet available in this build"
            ) from None
        target.run(settings, args)

    return handler


COMMANDS: dict[tuple[str, str | None], Callable[[Settings, argparse.Namespace], None]] = {
    ("migrate", None): cmd_migrate,
    ("serve", None): cmd_serve,
    ("employer", "create"): cmd_employer_create,
    ("token", "create"): cmd_token_create,
    ("worker", None): _delegate("bot.dispatch.worker"),
    ("simulator", None): _delegate("bot.simulator.cli"),
    ("demo", None): _delegate("bot.demo"),
    **{("bench", kind): _delegate("bot.bench.") for kind in BENCHMARKS},
}
