"""`jem-bot token create`: print a new API token for an employer (only its hash is stored)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.runtime import UsageError, create_token, database_source, database_url, find_employer, run_with_engine
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="print a new API token (only its hash is stored)")
    create.add_argument("--employer", required=True, metavar="SLUG", help="the employer's slug")
    create.add_argument("--label", help="a note to recognise the token by")


def run(settings: Settings, args: argparse.Namespace) -> None:
    # `create` is the only action (argparse has refused any other).
    async def create(engine: AsyncEngine) -> str:
        from bot.db.migrate import check_schema

        await check_schema(engine)
        async with engine.begin() as conn:
            employer_id = await find_employer(conn, args.employer)
            if employer_id is None:
                raise UsageError(f"no employer with slug {args.employer!r}: create it with `jem-bot employer create`")
            return await create_token(conn, employer_id, label=args.label)

    print(run_with_engine(database_url(settings), create, source=database_source(settings)))
