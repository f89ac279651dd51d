"""`jem-bot migrate`: apply all database migrations (safe to run twice, and concurrently)."""

from __future__ import annotations

import argparse

from bot.runtime import CommandFailedError, database_url, run_with_engine
from bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the database comes from the environment."""


def run(settings: Settings, args: argparse.Namespace) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db.migrate import upgrade

    url = database_url(settings)
    run_with_engine(url, _nothing)  # a clear "unreachable" line instead of an Alembic traceback
    try:
        upgrade(url)
    except SQLAlchemyError as exc:
        raise CommandFailedError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    print("database schema is up to date")


async def _nothing(_engine: object) -> None:
    return None
