"""`jem-bot demo`: database, migrations, two demo employers with employees, tokens, the simulator, the API,
the webhook and the dispatcher, in one command. Re-running reuses the data.

"Demo Ltd" sends from its own WhatsApp number, "Acme Retail" from the installation's shared one, and one person
works for both: every routing rule of docs/architecture.md#several-numbers can be tried by hand.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from bot.runtime import (
    CommandFailedError,
    check_listen_address,
    create_employer,
    create_token,
    database_source,
    database_url,
    find_employer,
    listen_settings,
    run_with_engine,
    stop_signals_exit_zero,
)
from bot.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SLUG = "demo"
NAME = "Demo Ltd"
TIMEZONE = "Africa/Johannesburg"
TAGS = ("warehouse", "drivers", "office")
EMPLOYEES = 40
# Demo Ltd's own number (the simulator plays any number it is sent from) and its rate.
OWN_NUMBER = "100000000000002"
OWN_WABA = "200000000000002"
OWN_RATE = 80.0
# The second employer, on the shared number; its first employee is also Demo Ltd's first (one person, two jobs).
ACME_SLUG = "acme"
ACME_NAME = "Acme Retail"
ACME_TAGS = ("store", "managers")
ACME_EMPLOYEES = 12
FIRST = ("Thandi", "Sipho", "Lerato", "Johan", "Ayesha", "Pieter", "Nomsa", "Kagiso", "Zanele", "Ruan")
LAST = ("Nkosi", "Dlamini", "van Wyk", "Naidoo", "Botha", "Mokoena", "Pillay", "Smith")
# The workforce reads English, Afrikaans and isiZulu; every fourth employee has no language of their own (the
# employer's default, English, applies).
LANGUAGES = ("en", "af", "zu", None)
DEFAULT_LANGUAGE = "en"


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


def acme_employees() -> list[tuple[str, str, list[str]]]:
    """Acme's people: Demo Ltd's first employee (the same phone) and eleven of its own, seeded like Demo's."""
    rng = random.Random(2027)
    shared_phone, shared_name, _ = demo_employees()[0]
    people = [(shared_phone, shared_name, [ACME_TAGS[0]])]
    for i in range(1, ACME_EMPLOYEES):
        people.append((f"+2782556{i:04d}", f"{rng.choice(FIRST)} {rng.choice(LAST)}", [ACME_TAGS[i % len(ACME_TAGS)]]))
    return people


def secret_key(settings: Settings) -> str:
    """JEM_SECRET_KEY, else the demo's own, made once and kept in JEM_DATA_DIR (readable by its owner alone)."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    try:
        key = path.read_text().strip()
    except OSError:
        key = ""
    if len(key) < 32:
        key = secrets.token_urlsafe(48)
        path.write_text(key + "\n")
    path.chmod(0o600)
    return key


async def _employer(conn: AsyncConnection, slug: str, name: str) -> int:
    employer_id = await create_employer(conn, slug=slug, name=name, timezone=TIMEZONE, language=DEFAULT_LANGUAGE)
    if employer_id is None:  # a re-run: the employer is there from last time
        employer_id = await find_employer(conn, slug)
    if employer_id is None:
        raise CommandFailedError(f"the demo employer {slug!r} was deleted while the demo was seeding it")
    return employer_id


async def _token(conn: AsyncConnection, employer_id: int, saved: str | None) -> str:
    """The saved token if it still works, else a new one."""
    from bot.auth import hash_token
    from bot.db.queries import query

    if saved:
        found = await conn.execute(query("token_exists"), {"e": employer_id, "h": hash_token(saved)})
        if found.first() is not None:
            return saved
    return await create_token(conn, employer_id, label="demo")


async def seed(engine: AsyncEngine, settings: Settings, saved: dict[str, str]) -> dict[str, str]:
    """Create (or find) both demo employers, their employees and Demo Ltd's own number; returns the employers'
    tokens by slug (the saved ones while they still work)."""
    from bot.crypto import TokenBox, hint
    from bot.db.queries import query

    async with engine.begin() as conn:
        tokens: dict[str, str] = {}
        for slug, name, people in ((SLUG, NAME, demo_employees()), (ACME_SLUG, ACME_NAME, acme_employees())):
            employer_id = await _employer(conn, slug, name)
            for phone, person, tags in people:
                language = LANGUAGES[int(phone[-4:]) % len(LANGUAGES)]
                params = {"e": employer_id, "p": phone, "n": person, "t": tags, "lang": language}
                await conn.execute(query("demo_employee"), params)
            tokens[slug] = await _token(conn, employer_id, saved.get(slug))
            if slug == SLUG:
                # Sealed again on every run: the secret key may be new (a deleted JEM_DATA_DIR/secret_key).
                access_token = saved.get("own_number_token") or f"demo-{secrets.token_urlsafe(24)}"
                tokens["own_number_token"] = access_token
                params = {
                    "e": employer_id,
                    "p": OWN_NUMBER,
                    "w": OWN_WABA,
                    "token": TokenBox(settings.secret_key).seal(access_token),
                    "hint": hint(access_token),
                    "rate": OWN_RATE,
                }
                await conn.execute(query("sender_put"), params)
        return tokens


def _saved(path: Path) -> dict[str, str]:
    """What the last run saved: each employer's token (older demos saved Demo Ltd's alone, as `token`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    found = {k: v for k, v in (data.get("tokens") or {}).items() if isinstance(v, str)}
    if isinstance(data.get("token"), str):
        found.setdefault(SLUG, data["token"])
    if isinstance(data.get("own_number_token"), str):
        found["own_number_token"] = data["own_number_token"]
    return found


async def _reachable(_engine: AsyncEngine) -> None:
    """Nothing: run_with_engine has checked that the database answers."""


def run(settings: Settings, args: argparse.Namespace) -> None:
    from bot.db.migrate import upgrade
    from bot.server import serve
    from bot.simulator.embedded import simulator_settings, simulator_url

    settings = listen_settings(settings, args.host, args.port)
    check_listen_address(settings.host, settings.port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting the database ({'DATABASE_URL' if settings.database_url else f'embedded, in {settings.data_dir}'})",
          flush=True)  # fmt: skip
    url = database_url(settings)
    # A bad DATABASE_URL is one line saying what to fix (bot/db/engine.py), not an Alembic traceback from `upgrade`.
    run_with_engine(url, _reachable, source=database_source(settings))
    upgrade(url)

    settings = settings.replace(secret_key=secret_key(settings))
    saved_path = settings.data_dir / "demo.json"
    tokens = run_with_engine(
        url, lambda engine: seed(engine, settings, _saved(saved_path)), source=database_source(settings)
    )
    token = tokens[SLUG]
    api_url = f"http://{settings.host}:{settings.port}"
    saved = {
        "api_url": api_url,
        "token": token,
        "tokens": {SLUG: token, ACME_SLUG: tokens[ACME_SLUG]},
        "own_number_token": tokens["own_number_token"],
    }
    saved_path.write_text(json.dumps(saved) + "\n")
    saved_path.chmod(0o600)

    print(f"demo employer: {NAME} (slug {SLUG}, {EMPLOYEES} employees tagged {', '.join(TAGS)}), "
          f"sending from its own number {OWN_NUMBER} at {OWN_RATE:g} msg/s")  # fmt: skip
    print(f"second employer: {ACME_NAME} (slug {ACME_SLUG}, {ACME_EMPLOYEES} employees tagged "
          f"{', '.join(ACME_TAGS)}), on the shared number; {demo_employees()[0][1]} works for both")  # fmt: skip
    print(f"{ACME_NAME}'s token (the API as {ACME_NAME}): {tokens[ACME_SLUG]}")
    print(f"API + webhook: {api_url}  (docs at {api_url}/docs)")
    # The simulator's port is chosen here (the one after the API's if free), so the line names the real one.
    settings = simulator_settings(settings)
    simulator = simulator_url(settings)
    print(f"WhatsApp simulator: {simulator}  (what the phones received: {simulator}/_simulator/stats); "
          "simulated employees read everything and acknowledge some")  # fmt: skip
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
