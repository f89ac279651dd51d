"""`jem-bot`: the command line. Errors are one line on stderr: exit 2 for usage/config, 1 for failures, 130 when
interrupted.

The commands are the modules of `bot.commands`, listed in COMMANDS; this module only parses the command line,
runs the chosen command and turns its errors into exit statuses. What the commands share is in
`bot.runtime`, which they import instead of anything here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple, NoReturn

from bot.runtime import Command, CommandFailedError, UsageError
from bot.settings import ENVIRONMENT, ConfigError, Settings


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage plus the error; users asked for one line that says what to fix.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Each command's module is imported only when that command is chosen: some pull in SQLAlchemy, Alembic, the web
# framework or the Graph client, and importing them all would cost every `jem-bot` run (`--help` included) over a
# second. Hence a function per command, with the import inside it.


def _migrate() -> Command:
    from bot.commands import migrate

    return migrate


def _serve() -> Command:
    from bot.commands import serve

    return serve


def _worker() -> Command:
    from bot.commands import worker

    return worker


def _employer() -> Command:
    from bot.commands import employer

    return employer


def _token() -> Command:
    from bot.commands import token

    return token


def _sender() -> Command:
    from bot.commands import sender

    return sender


def _simulator() -> Command:
    from bot.commands import simulator

    return simulator


def _demo() -> Command:
    from bot.commands import demo

    return demo


def _bench() -> Command:
    from bot.commands import bench

    return bench


class _Entry(NamedTuple):
    name: str
    help: str
    load: Callable[[], Command]


# In the order `jem-bot --help` lists them.
COMMANDS: tuple[_Entry, ...] = (
    _Entry("migrate", "apply all database migrations (safe to run twice)", _migrate),
    _Entry("serve", "run the API + webhook (+ dispatcher)", _serve),
    _Entry("worker", "run the dispatcher only (any number, on any number of machines)", _worker),
    _Entry("employer", "manage employers", _employer),
    _Entry("token", "manage API tokens", _token),
    _Entry("sender", "an employer's own WhatsApp number", _sender),
    _Entry("simulator", "run the WhatsApp Cloud API simulator", _simulator),
    _Entry("demo", "the whole product, running, in one command", _demo),
    _Entry("bench", "benchmarks; print a table, or JSON with --json", _bench),
)


def _environment_help() -> str:
    width = max(len(name) for name, _, _ in ENVIRONMENT)
    lines = ["environment:"]
    lines += [f"  {name:<{width}}  {meaning} (default: {default})" for name, default, meaning in ENVIRONMENT]
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, with the options of `command` only (see COMMANDS for why); every command is listed."""
    parser = _Parser(
        prog="jem-bot",
        description="WhatsApp announcements for employers: never twice, never lost.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Nested subparsers (`employer create`, `bench fanout`) inherit the class: one-line errors all the way down.
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for entry in COMMANDS:
        command_parser = sub.add_parser(entry.name, help=entry.help)
        if entry.name == command:
            entry.load().add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else list(argv)
    # The command is the first word (there are no global options besides --help).
    chosen = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(chosen).parse_args(words)
    command = next(entry for entry in COMMANDS if entry.name == args.command).load()
    try:
        command.run(Settings.from_env(), args)
    except (ConfigError, UsageError) as exc:
        _fail(2, str(exc))
    except CommandFailedError as exc:
        _fail(1, str(exc))
    except KeyboardInterrupt:
        _fail(130, "interrupted")
    except Exception as exc:
        if _database_refused(exc):
            _fail(2, str(exc))
        raise


def _database_refused(exc: Exception) -> bool:
    """An unreachable database or a schema that is behind: configuration, so exit 2."""
    # Imported here, not at the top: these modules bring in SQLAlchemy and Alembic (see COMMANDS), and a command
    # that raised one of these errors has imported them already.
    from bot.db.engine import DatabaseUnavailableError
    from bot.db.migrate import SchemaBehindError

    return isinstance(exc, (DatabaseUnavailableError, SchemaBehindError))


def _fail(status: int, message: str) -> NoReturn:
    print(f"jem-bot: error: {message}", file=sys.stderr)
    raise SystemExit(status)
