"""`jem-bot demo`: database, migrations, a demo employer with employees, a token, the simulator, the API,
the webhook and the dispatcher, in one command. Re-running reuses the data."""

from __future__ import annotations

import argparse
import json
import random
from typing import TYPE_CHECKING

from bot.runtime import (
    CommandFailedError,
    check_listen_address,
    create_employer,
    create_token,
    database_url,
    find_employer,
    listen_settings,
    run_with_engine,
    stop_signals_exit_zero,
)
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SLUG = "demo"
NAME = "Demo Ltd"
TIMEZONE = "Africa/Johannesburg"
TAGS = ("warehouse", "drivers", "office")
EMPLOYEES = 40
FIRST = ("Thandi", "Sipho", "Lerato", "Johan", "Ayesha", "Pieter", "Nomsa", "Kagiso", "Zanele", "Ruan")
LAST = ("Nkosi", "Dlamini", "van Wyk", "Naidoo", "Botha", "Mokoena", "Pillay", "Smith")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: JEM_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: JEM_PORT or 8000)")


def demo_employees() -> list[tuple[str, str, list[str]]]:
    """The same 40 fake people every time (seeded), so re-running upserts instead of adding."""
    rng = random.Random(2026)
    people = []
    for i in range(EMPLOYEES):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        people.append((f"+2782555{i:04d}", name, [TAGS[i % len(TAGS)]]))
    return people


async def seed(engine: AsyncEngine, saved_token: str | None) -> tuple[int, str]:
    """Create (or find) the demo employer and its employees; reuse the saved token if it still works."""
    from bot.auth import hash_token
    from bot.db.queries import query

    async with engine.begin() as conn:
        employer_id = await create_employer(conn, slug=SLUG, name=NAME, timezone=TIMEZONE)
        if employer_id is None:  # a re-run: the demo employer is there from last time
            employer_id = await find_employer(conn, SLUG)
        if employer_id is None:
            raise CommandFailedError(f"the demo employer {SLUG!r} was deleted while the demo was seeding it")
        for phone, name, tags in demo_employees():
            await conn.execute(query("demo_employee"), {"e": employer_id, "p": phone, "n": name, "t": tags})
        if saved_token:
            found = await conn.execute(query("token_exists"), {"e": employer_id, "h": hash_token(saved_token)})
            if found.first() is not None:
                return employer_id, saved_token
        return employer_id, await create_token(conn, employer_id, label="demo")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.db.migrate import upgrade
    from bot.server import serve

    settings = listen_settings(settings, args.host, args.port)
    check_listen_address(settings.host, settings.port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting the database ({'DATABASE_URL' if settings.database_url else f'embedded, in {settings.data_dir}'})",
          flush=True)  # fmt: skip
    url = database_url(settings)
    upgrade(url)

    saved_path = settings.data_dir / "demo.json"
    saved_token: str | None = None
    try:
        saved_token = json.loads(saved_path.read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        saved_token = None

    _, token = run_with_engine(url, lambda engine: seed(engine, saved_token))
    api_url = f"http://{settings.host}:{settings.port}"
    saved_path.write_text(json.dumps({"api_url": api_url, "token": token}) + "\n")
    saved_path.chmod(0o600)

    print(f"demo employer: {NAME} (slug {SLUG}, {EMPLOYEES} employees tagged {', '.join(TAGS)})")
    print(f"API + webhook: {api_url}  (docs at {api_url}/docs)")
    print("WhatsApp simulator: on the next free port; simulated employees read everything and acknowledge some")
    print(f"API token: {token}")
    print(f"saved to {saved_path} (the console reads it)")
    print("next:")
    print(
        f"  curl -s -X POST {api_url}/announcements -H 'Authorization: Bearer {token}' "
        '-H \'Content-Type: application/json\' -d \'{"message": "Fire drill at 14:00", "audience": {"all": true}}\''
    )
    print("  uv run jem-console")
    print("press Ctrl+C to stop", flush=True)

    with stop_signals_exit_zero():
        serve(settings, database_url=url, dispatcher=True, simulator=True)
