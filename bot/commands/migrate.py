"""`jem-bot migrate`: apply all database migrations (safe to run twice, and concurrently)."""

from __future__ import annotations

import argparse

from bot.runtime import CommandFailedError, database_source, database_url, run_with_engine
from bot.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the database comes from the environment."""


def run(settings: Settings, args: argparse.Namespace) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db.migrate import current_revision, head_revision, revisions_between, upgrade

    url = database_url(settings)
    # Also a clear one-line "unreachable" error (bot/db/engine.py) instead of an Alembic traceback.
    before = run_with_engine(url, current_revision, source=database_source(settings))
    try:
        upgrade(url)
    except SQLAlchemyError as exc:
        raise CommandFailedError(f"migration failed: {str(exc).splitlines()[0]}") from exc
    after = run_with_engine(url, current_revision, source=database_source(settings))
    print(migration_report(revisions_between(before, after), after, head_revision()))


def migration_report(applied: list[str], now: str | None, head: str | None) -> str:
    """What `migrate` did: "applied 0001 … 0004 (4 migrations): now at 0004 (head)", or that there was nothing to."""
    position = f"{now} (head)" if now == head else f"{now} (the code's head is {head})"
    if not applied:
        return f"database schema is up to date: at {position}"
    shown = ", ".join(applied) if len(applied) <= 2 else f"{applied[0]} … {applied[-1]}"
    plural = "migration" if len(applied) == 1 else "migrations"
    return f"applied {shown} ({len(applied)} {plural}): now at {position}"
