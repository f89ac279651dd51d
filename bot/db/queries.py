"""The project's hand-written SQL, loaded by name from `queries.sql` (procrastinate's layout).

Every statement that moves a delivery lives in that one file, under a `-- name: <name>` header followed by
comment lines saying what it is for, so "never twice" can be checked by reading one file. `query(name)` is
the only way code gets at it; tests/unit/test_queries.py parses every statement against PostgreSQL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(source: str) -> dict[str, str]:
    """`{name: sql}` from the file's text; a name given twice is an error, not a silent override."""
    parts = _HEADER.split(source)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        sql = "\n".join(line for line in body.strip().splitlines() if not line.lstrip().startswith("--")).strip()
        queries[name] = sql.removesuffix(";").strip()
    return queries


@functools.cache
def all_queries() -> dict[str, str]:
    return parse(resources.files("bot.db").joinpath("queries.sql").read_text(encoding="utf-8"))


@functools.cache
def query(name: str) -> TextClause:
    """The named statement, ready for `session.execute(query(name), params)`."""
    try:
        return text(all_queries()[name])
    except KeyError:
        raise KeyError(f"no query named {name!r} in bot/db/queries.sql") from None


@dataclass(frozen=True, slots=True)
class Positional:
    """A named statement in asyncpg's own form (`$1`, `$2`…), for the few hot paths that skip SQLAlchemy."""

    sql: str
    names: tuple[str, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


@functools.cache
def positional(name: str) -> Positional:
    compiled = query(name).compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return Positional(compiled.string, tuple(compiled.positiontup or ()))
