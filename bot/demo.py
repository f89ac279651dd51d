"""`jem-bot demo`: database, migrations, a demo employer with employees, a token, the simulator, the API,
the webhook and the dispatcher, in one command. Re-running reuses the data."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import signal
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.engine import make_engine, ping
from bot.db.migrate import upgrade
from bot.settings import Settings

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
    from bot.auth import generate_token, hash_token

    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO employer (slug, name, timezone) VALUES (:s, :n, :t) ON CONFLICT (slug) DO NOTHING"),
            {"s": SLUG, "n": NAME, "t": TIMEZONE},
        )
        employer_id = int(
            (await conn.execute(text("SELECT id FROM employer WHERE slug = :s"), {"s": SLUG})).scalar_one()
        )
        for phone, name, tags in demo_employees():
            await conn.execute(
                text(
                    "INSERT INTO employee (employer_id, phone, name, tags) VALUES (:e, :p, :n, :t) "
                    "ON CONFLICT (employer_id, phone) DO NOTHING"
                ),
                {"e": employer_id, "p": phone, "n": name, "t": tags},
            )
        if saved_token:
            found = await conn.execute(
                text("SELECT 1 FROM api_token WHERE employer_id = :e AND token_hash = :h"),
                {"e": employer_id, "h": hash_token(saved_token)},
            )
            if found.first() is not None:
                return employer_id, saved_token
        token = generate_token()
        await conn.execute(
            text("INSERT INTO api_token (employer_id, token_hash, label) VALUES (:e, :h, 'demo')"),
            {"e": employer_id, "h": hash_token(token)},
        )
        return employer_id, token


def _routes(settings: Settings) -> set[str]:
    """The paths this build serves (an app that is built, never started: nothing connects)."""
    from bot.app import create_app

    return set(create_app(settings).route_handler_method_map)


def _exit_on_stop_signal(signum: int, frame: object) -> None:
    # A stop on request is a success; SystemExit lets uvicorn and the embedded PostgreSQL's exit hook run.
    raise SystemExit(0)


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.cli import UsageError, _check_listen_address, _database_url
    from bot.server import serve

    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535, got {args.port}")
    settings = settings.replace(host=args.host or settings.host, port=args.port or settings.port)
    _check_listen_address(settings.host, settings.port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting the database ({'DATABASE_URL' if settings.database_url else f'embedded, in {settings.data_dir}'})",
          flush=True)  # fmt: skip
    url = _database_url(settings)
    upgrade(url)

    saved_path = settings.data_dir / "demo.json"
    saved_token: str | None = None
    try:
        saved_token = json.loads(saved_path.read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        saved_token = None

    async def prepare() -> tuple[int, str]:
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            await ping(engine)
            return await seed(engine, saved_token)
        finally:
            await engine.dispose()

    _, token = asyncio.run(prepare())
    api_url = f"http://{settings.host}:{settings.port}"
    saved_path.write_text(json.dumps({"api_url": api_url, "token": token}) + "\n")
    saved_path.chmod(0o600)

    dispatcher = importlib.util.find_spec("bot.dispatch.lifespan") is not None
    webhook = "/webhooks/whatsapp" in _routes(settings)
    print(f"demo employer: {NAME} (slug {SLUG}, {EMPLOYEES} employees tagged {', '.join(TAGS)})")
    print(f"API + webhook: {api_url}  (docs at {api_url}/docs)")
    print("WhatsApp simulator: on the next free port; simulated employees read everything and acknowledge some")
    if not dispatcher:
        print("note: the dispatcher (bot.dispatch.lifespan) is not in this build yet: announcements stay pending")
    if not webhook:
        print("note: the webhook (/webhooks/whatsapp) is not in this build yet: statuses will not be recorded")
    print(f"API token: {token}")
    print(f"saved to {saved_path} (the console reads it)")
    print("next:")
    print(
        f"  curl -s -X POST {api_url}/announcements -H 'Authorization: Bearer {token}' "
        '-H \'Content-Type: application/json\' -d \'{"message": "Fire drill at 14:00", "audience": {"all": true}}\''
    )
    print("  uv run jem-console")
    print("press Ctrl+C to stop", flush=True)

    previous = {sig: signal.signal(sig, _exit_on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve(settings, database_url=url, dispatcher=dispatcher, simulator=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.flush()
