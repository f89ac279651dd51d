"""`jem-bot employer create`: add an employer; prints its id."""

from __future__ import annotations

import argparse
import re
import zoneinfo
from typing import TYPE_CHECKING

from bot.runtime import (
    CommandFailedError,
    UsageError,
    create_employer,
    database_source,
    database_url,
    run_with_engine,
)
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Meta's template language codes: en, af, zu, en_US, pt_BR…
LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2,4})?")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create an employer; prints its id")
    create.add_argument("slug", help="short unique name: lowercase letters, digits, dashes")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--timezone", default="UTC", help="IANA zone, e.g. Africa/Johannesburg")
    create.add_argument(
        "--language",
        help="template language for employees without one, e.g. en, af, zu, en_US (default: none, any approved "
        "translation)",
    )


def run(settings: Settings, args: argparse.Namespace) -> None:
    # `create` is the only action (argparse has refused any other).
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
    language = None
    if args.language is not None:
        language = args.language.strip().replace("-", "_")
        lang, _, region = language.partition("_")
        language = f"{lang.lower()}_{region.upper()}" if region else lang.lower()
        if not LANGUAGE.fullmatch(language):
            raise UsageError(f"--language {args.language!r} must be a code like en, af, zu or en_US")

    async def create(engine: AsyncEngine) -> int:
        from bot.db.migrate import check_schema

        await check_schema(engine)
        async with engine.begin() as conn:
            employer_id = await create_employer(conn, slug=slug, name=name, timezone=tz, language=language)
        if employer_id is None:
            raise CommandFailedError(f"an employer with slug {slug!r} already exists")
        return employer_id

    print(run_with_engine(database_url(settings), create, source=database_source(settings)))
