"""`jem-bot token list` and `jem-bot token revoke`, and what the API makes of them: a revoked token is refused at
once, and `last used` is kept (to the minute)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.auth import hash_token
from bot.db.migrate import upgrade
from tests.conftest import Tenant
from tests.db import fresh_database
from tests.integration.test_cli import assert_one_line_error, cli_env, jem, jem_in_process

Client = AsyncTestClient[Litestar]
Db = async_sessionmaker[AsyncSession]
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(jem, env, *args)


async def last_used(db: Db, token_id: int) -> datetime | None:
    async with db() as session:
        value = await session.execute(text("SELECT last_used_at FROM api_token WHERE id = :id"), {"id": token_id})
        return value.scalar_one()  # type: ignore[no-any-return]


async def test_list_then_revoke_and_the_api_refuses_the_token_at_once(
    client: Client, tenant: Tenant, database_url: str, db: Db, tmp_path: Path
) -> None:
    env = cli_env(database_url, tmp_path)
    assert (await client.get("/me", headers=tenant.headers)).status_code == 200
    created = await run(env, "token", "create", "--employer", tenant.slug, "--label", "Payroll\tportal\nv2")
    assert created.returncode == 0, created.stderr
    second = created.stdout.strip()

    listed = await run(env, "token", "list", "--employer", tenant.slug)

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, listed.stdout
    first_id, second_id = (int(line.split("\t")[0]) for line in lines)
    assert re.fullmatch(rf"{first_id}\t-\tcreated {ISO}\tlast used {ISO}", lines[0]), lines[0]
    assert re.fullmatch(rf"{second_id}\tPayroll portal v2\tcreated {ISO}\tlast used never", lines[1]), lines[1]
    for secret in (tenant.token, second, hash_token(tenant.token).hex(), hash_token(second).hex()):
        assert secret not in listed.stdout + listed.stderr

    revoked = await run(env, "token", "revoke", str(first_id))

    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.count("\n") == 1
    assert f"revoked token {first_id}" in revoked.stdout
    assert (await client.get("/me", headers=tenant.headers)).status_code == 401
    assert (await client.get("/me", headers={"Authorization": f"Bearer {second}"})).status_code == 200
    relisted = (await run(env, "token", "list", "--employer", tenant.slug)).stdout.splitlines()
    assert re.fullmatch(rf"{first_id}\t-\tcreated {ISO}\tlast used {ISO}\trevoked {ISO}", relisted[0]), relisted
    assert "revoked" not in relisted[1]

    again = await run(env, "token", "revoke", str(first_id))
    assert "already revoked" in assert_one_line_error(again, 2)
    assert (await client.get("/me", headers=tenant.headers)).status_code == 401


async def test_last_used_is_written_on_use_at_most_once_a_minute(client: Client, tenant: Tenant, db: Db) -> None:
    async with db() as session:
        token_id = (await session.execute(text("SELECT id FROM api_token"))).scalar_one()
    assert await last_used(db, token_id) is None

    assert (await client.get("/me", headers=tenant.headers)).status_code == 200
    first = await last_used(db, token_id)
    assert first is not None
    assert (await client.get("/announcements", headers=tenant.headers)).status_code == 200
    assert await last_used(db, token_id) == first  # a second request within the minute writes nothing

    async with db() as session, session.begin():
        await session.execute(
            text("UPDATE api_token SET last_used_at = now() - interval '2 minutes' WHERE id = :id"), {"id": token_id}
        )
    stale = await last_used(db, token_id)
    assert (await client.get("/me", headers=tenant.headers)).status_code == 200
    refreshed = await last_used(db, token_id)
    assert stale is not None
    assert refreshed is not None
    assert refreshed > stale


# --- errors: one line on stderr, exit status 2 (in this process, as test_cli.py does for most error cases) --------


@pytest.fixture(scope="module")
def tokens_url(admin_url: str) -> Iterator[str]:
    with fresh_database(admin_url, prefix="jem_cli_tokens") as url:
        upgrade(url)
        yield url


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("token", "list", "--employer", "nobody-here"), "nobody-here"),
        (("token", "list"), "--employer"),
        (("token", "revoke", "424242"), "424242"),
        (("token", "revoke", "0"), "0"),
        (("token", "revoke", str(2**63)), str(2**63)),
        (("token", "revoke", "seven"), "seven"),
        (("token", "revoke"), "ID"),
    ],
)
def test_errors_exit_2_with_one_line(
    tokens_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    named: str,
) -> None:
    result = jem_in_process(cli_env(tokens_url, tmp_path), capsys, monkeypatch, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # argparse's own errors name the subcommand (`jem-bot token revoke: error: …`).
    assert re.match(r"jem-bot( token \w+)?: error: ", lines[0]), lines[0]
    assert named in lines[0]
    assert result.stdout == ""


def test_an_employer_without_tokens_lists_nothing(
    tokens_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(tokens_url, tmp_path)
    created = jem_in_process(env, capsys, monkeypatch, "employer", "create", "quiet-co", "--name", "Quiet")
    assert created.returncode == 0, created.stderr
    listed = jem_in_process(env, capsys, monkeypatch, "token", "list", "--employer", "quiet-co")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
