"""`jem-bot sender set`: an employer's own WhatsApp number; the access token is read from standard input (so it
never appears in a process list or a shell history)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.runtime import UsageError, database_source, database_url, find_employer, run_with_engine
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = actions.add_parser("set", help="send an employer's announcements from its own number (token on stdin)")
    put.add_argument("--employer", required=True, metavar="SLUG", help="the employer's slug")
    put.add_argument("--phone-number-id", required=True, metavar="ID", help="Graph's id of the number")
    put.add_argument("--waba-id", required=True, metavar="ID", help="the WhatsApp Business Account id")
    put.add_argument("--rate", type=float, default=80.0, help="messages per second from this number (default 80)")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot import contracts

    token = sys.stdin.readline().strip() if not sys.stdin.isatty() else ""
    if not token:
        raise UsageError("give the access token on standard input, e.g. `jem-bot sender set … < token.txt`")
    data = contracts.SenderIn(
        phone_number_id=args.phone_number_id, waba_id=args.waba_id, access_token=token, rate=args.rate
    )

    async def put(engine: AsyncEngine) -> contracts.Sender:
        from sqlalchemy.ext.asyncio import AsyncSession

        from bot.db.migrate import check_schema
        from bot.errors import DomainError
        from bot.senders import service

        await check_schema(engine)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            employer_id = await find_employer(await session.connection(), args.employer)
            if employer_id is None:
                raise UsageError(f"no employer with slug {args.employer!r}: create it with `jem-bot employer create`")
            try:
                sender = await service.put(session, settings, employer_id, data)
            except DomainError as exc:
                raise UsageError(exc.detail) from None
            await session.commit()
            return sender

    sender = run_with_engine(database_url(settings), put, source=database_source(settings))
    print(f"{args.employer} sends from {sender.phone_number_id} at {sender.rate:g} msg/s "
          f"(token {sender.access_token_hint})")  # fmt: skip
