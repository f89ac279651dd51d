"""`jem-bot token create|list|revoke`: API tokens of an employer. Only a token's hash is stored, and neither the token
nor its hash is ever printed again after `create`."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.runtime import UsageError, create_token, database_source, database_url, find_employer, run_with_engine
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# PostgreSQL's bigint: a larger id names no token (and the query would fail on it).
MAX_ID = 2**63 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="print a new API token (only its hash is stored)")
    create.add_argument("--employer", required=True, metavar="SLUG", help="the employer's slug")
    create.add_argument("--label", help="a note to recognise the token by")
    listing = actions.add_parser(
        "list", help="one token per line: id, label, created, last used (or never), revoked (never the token)"
    )
    listing.add_argument("--employer", required=True, metavar="SLUG", help="the employer's slug")
    revoke = actions.add_parser("revoke", help="revoke a token: it is refused (401) from the next request on")
    revoke.add_argument("id", type=int, metavar="ID", help="the token's id, as `jem-bot token list` shows it")


def _when(value: datetime | None) -> str:
    return "never" if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _label(value: str | None) -> str:
    # A label is free text: control characters (a newline, a tab) would break the one-line-per-token layout.
    shown = "".join(" " if not c.isprintable() else c for c in (value or "")).strip()
    return shown or "-"


def token_line(row: Any) -> str:
    """`id<TAB>label<TAB>created <time><TAB>last used <time|never>[<TAB>revoked <time>]`, times in UTC."""
    fields = [
        str(row.id),
        _label(row.label),
        f"created {_when(row.created_at)}",
        f"last used {_when(row.last_used_at)}",
    ]
    if row.revoked_at is not None:
        fields.append(f"revoked {_when(row.revoked_at)}")
    return "\t".join(fields)


async def _employer_id(conn: AsyncConnection, slug: str) -> int:
    employer_id = await find_employer(conn, slug)
    if employer_id is None:
        raise UsageError(f"no employer with slug {slug!r}: create it with `jem-bot employer create`")
    return employer_id


def _list(args: argparse.Namespace) -> Callable[[AsyncEngine], Awaitable[str]]:
    async def list_tokens(engine: AsyncEngine) -> str:
        from bot.db.queries import query

        async with engine.connect() as conn:
            employer_id = await _employer_id(conn, args.employer)
            rows = (await conn.execute(query("token_list"), {"e": employer_id})).all()
        return "\n".join(token_line(row) for row in rows)

    return list_tokens


def _revoke(args: argparse.Namespace) -> Callable[[AsyncEngine], Awaitable[str]]:
    if not 0 < args.id <= MAX_ID:
        raise UsageError(f"no token with id {args.id}: `jem-bot token list --employer SLUG` shows the ids")

    async def revoke(engine: AsyncEngine) -> str:
        from bot.db.queries import query

        async with engine.begin() as conn:
            revoked = (await conn.execute(query("token_revoke"), {"id": args.id})).first()
            if revoked is None:
                since = (await conn.execute(query("token_revoked_at"), {"id": args.id})).first()
                if since is None:
                    raise UsageError(f"no token with id {args.id}: `jem-bot token list --employer SLUG` shows the ids")
                raise UsageError(f"token {args.id} is already revoked (since {_when(since.revoked_at)})")
        return f"revoked token {revoked.id} ({_label(revoked.label)}): it is refused from now on"

    return revoke


def run(settings: Settings, args: argparse.Namespace) -> None:
    if args.action != "create":
        work = _list(args) if args.action == "list" else _revoke(args)
        from bot.db.migrate import check_schema

        async def checked(engine: AsyncEngine) -> str:
            await check_schema(engine)
            return await work(engine)

        output = run_with_engine(database_url(settings), checked, source=database_source(settings))
        if output:
            print(output)
        return

    async def create(engine: AsyncEngine) -> str:
        from bot.db.migrate import check_schema

        await check_schema(engine)
        async with engine.begin() as conn:
            employer_id = await find_employer(conn, args.employer)
            if employer_id is None:
                raise UsageError(f"no employer with slug {args.employer!r}: create it with `jem-bot employer create`")
            return await create_token(conn, employer_id, label=args.label)

    print(run_with_engine(database_url(settings), create, source=database_source(settings)))
