"""bot/db/queries.sql: every named statement exists, is used, and is valid SQL for the migrated schema."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.engine import make_pg_pool
from bot.db.queries import all_queries, parse, positional, query

BOT = Path(__file__).resolve().parents[2] / "bot"
CALLED = re.compile(r"""query\(\s*"([a-z_][a-z0-9_]*)"\s*\)""")


def names_called_in_code() -> set[str]:
    return {name for path in BOT.rglob("*.py") for name in CALLED.findall(path.read_text(encoding="utf-8"))}


def test_the_file_parses_into_named_statements_with_their_comments_dropped() -> None:
    parsed = parse("-- file header\n\n-- name: one\n-- what it does\nSELECT 1;\n\n-- name: two\nSELECT\n  2\n")
    assert parsed == {"one": "SELECT 1", "two": "SELECT\n  2"}


def test_a_name_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")


def test_every_name_the_code_asks_for_exists_and_every_statement_is_used() -> None:
    called, defined = names_called_in_code(), set(all_queries())
    assert called - defined == set(), "asked for but not in queries.sql"
    assert defined - called == set(), "in queries.sql but never used"


def test_an_unknown_name_says_where_it_looked() -> None:
    with pytest.raises(KeyError, match=r"queries\.sql"):
        query("no_such_query")


async def test_every_statement_is_valid_for_the_migrated_schema(database_url: str) -> None:
    """PREPARE parses and plans each statement (names, types, casts) without running it."""
    dialect = asyncpg_dialect.dialect()
    conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        for name in sorted(all_queries()):
            sql = str(query(name).compile(dialect=dialect))
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:
                raise AssertionError(f"{name}: {exc}") from exc
    finally:
        await conn.close()


async def test_the_status_statement_never_scans_a_whole_table_even_planned_on_empty_tables(
    db: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """The webhook's pool keeps one generic plan per connection, made with the table sizes of that moment. Planned
    on a new installation's empty tables, it used to join by reading all of `delivery`, and kept doing so as the
    table grew (a quarter of the throughput, seconds of latency). Every row it touches is found by a key."""
    statement = positional("apply_statuses")
    pool = await make_pg_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"PREPARE hot AS {statement.sql}")
            nulls = ", ".join("NULL" for _ in statement.names)
            plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE hot({nulls})"))
            await conn.execute("DEALLOCATE hot")
    finally:
        await pool.close()
    assert "Index Scan using pk_delivery on delivery" in plan, plan  # it did plan the deliveries' lookups
    assert "Seq Scan" not in plan, plan
