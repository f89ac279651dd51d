"""Bearer tokens: every failure is a 401 problem, revocation works, only the SHA-256 hash is stored."""

from __future__ import annotations

import hashlib

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.auth import generate_token, hash_token
from tests.conftest import MakeTenant, Tenant

Client = AsyncTestClient[Litestar]


def assert_401(response: object) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["detail"]


@pytest.mark.parametrize("path", ["/me", "/employees", "/employees/1"])
async def test_no_token_is_401(client: Client, tenant: Tenant, path: str) -> None:
    assert_401(await client.get(path))


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token {token}", "{token}", "Bearer{token}"],
)
async def test_bad_scheme_is_401(client: Client, tenant: Tenant, header: str) -> None:
    assert_401(await client.get("/me", headers={"Authorization": header.format(token=tenant.token)}))


async def test_unknown_token_is_401(client: Client, tenant: Tenant) -> None:
    assert_401(await client.get("/me", headers={"Authorization": f"Bearer {generate_token()}"}))
    # A token that differs in one character is as unknown as any other.
    assert_401(await client.get("/me", headers={"Authorization": f"Bearer {tenant.token[:-1]}x"}))


async def test_scheme_is_case_insensitive(client: Client, tenant: Tenant) -> None:
    response = await client.get("/me", headers={"Authorization": f"bearer {tenant.token}"})
    assert response.status_code == 200


async def test_revoked_token_is_401(client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]) -> None:
    assert (await client.get("/me", headers=tenant.headers)).status_code == 200
    async with db() as session, session.begin():
        await session.execute(
            text("UPDATE api_token SET revoked_at = now() WHERE token_hash = :h"), {"h": hash_token(tenant.token)}
        )
    assert_401(await client.get("/me", headers=tenant.headers))
    assert_401(await client.post("/employees", json={"phone": "+27821234567", "name": "X"}, headers=tenant.headers))


async def test_unauthenticated_writes_are_rejected_before_validation(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    assert_401(await client.post("/employees", json={"phone": "+27821234567", "name": "X"}))
    assert_401(await client.post("/employees/import", json={"employees": [{"phone": "+27821234567", "name": "X"}]}))
    async with db() as session:
        assert (await session.execute(text("SELECT count(*) FROM employee"))).scalar_one() == 0


async def test_me_returns_the_tokens_employer(client: Client, make_tenant: MakeTenant) -> None:
    acme = await make_tenant(slug="acme", name="Acme Ltd", timezone="Africa/Johannesburg")
    globex = await make_tenant(slug="globex", name="Globex", timezone="Europe/London")
    for t, name, tz in ((acme, "Acme Ltd", "Africa/Johannesburg"), (globex, "Globex", "Europe/London")):
        response = await client.get("/me", headers=t.headers)
        assert response.status_code == 200
        assert response.json() == {
            "employer": {"id": t.employer_id, "slug": t.slug, "name": name, "timezone": tz, "language": None}
        }


async def test_only_the_sha256_hash_is_stored(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db() as session:
        rows = (await session.execute(text("SELECT * FROM api_token"))).mappings().all()
    assert len(rows) == 1
    assert bytes(rows[0]["token_hash"]) == hashlib.sha256(tenant.token.encode()).digest()
    # No column of the row holds the token, or any large piece of it, in any form.
    secret_part = tenant.token.removeprefix("jem_")
    for value in rows[0].values():
        as_text = value.hex() if isinstance(value, (bytes, memoryview)) else str(value)
        if isinstance(value, memoryview):
            as_text = bytes(value).hex()
        assert secret_part[:16] not in as_text
        assert secret_part[:16].encode().hex() not in as_text


def test_tokens_are_random_and_prefixed() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("jem_") and len(t) >= 40 for t in tokens)
    assert hash_token("abc") == hashlib.sha256(b"abc").digest()


@pytest.mark.parametrize("header", ["Bearer {unknown}", "Bearer {token}x", "Basic dXNlcjpwYXNz", None])
async def test_a_rejected_request_gives_its_connection_back(
    client: Client, app: Litestar, tenant: Tenant, header: str | None
) -> None:
    # A connection still checked out after the 401 is never closed: the app's engine is disposed at
    # shutdown with it outstanding, and the garbage collector later reports asyncpg's socket as unclosed.
    headers = {} if header is None else {"Authorization": header.format(unknown=generate_token(), token=tenant.token)}
    assert_401(await client.get("/me", headers=headers))
    assert app.state.engine.pool.checkedout() == 0
