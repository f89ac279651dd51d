"""Alembic, driven from code: `jem-bot migrate`, the schema check at start-up, and tests."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SchemaBehindError(Exception):
    """The database schema is older than the code; `jem-bot migrate` fixes it."""


def alembic_config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    # ConfigParser interpolation treats % specially; URL-encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Apply every migration (sync: Alembic's env.py runs its own event loop)."""
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://")).get_current_head()


def revisions_between(before: str | None, after: str | None) -> list[str]:
    """The revisions an upgrade from `before` (None: an empty database) to `after` applied, oldest first."""
    if after is None or before == after:
        return []
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://"))
    newest_first = [r.revision for r in script.iterate_revisions(after, before or "base")]
    return newest_first[::-1]


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except ProgrammingError:
            return None
    return None if row is None else str(row[0])


async def check_schema(engine: AsyncEngine) -> None:
    current, head = await current_revision(engine), head_revision()
    if current != head:
        state = "empty" if current is None else f"at {current}, code expects {head}"
        raise SchemaBehindError(f"database schema is behind ({state}): run `jem-bot migrate`")
