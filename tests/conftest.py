"""Shared fixtures: a migrated PostgreSQL database per test session, apps, clients and tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.auth import generate_token, hash_token
from bot.db.engine import make_engine, make_sessionmaker
from bot.db.migrate import upgrade
from bot.ledger.tracker import load_tracker
from bot.settings import Settings, Template
from tests.db import fresh_database, server_url
from tests.graph_respx import GRAPH_MOCKER

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
PHONE_NUMBER_ID = "100000000000001"
GRAPH_URL = "https://graph.test/v23.0"


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[str]:
    """An empty database migrated to head, private to this test session."""
    with fresh_database(admin_url) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=10, max_overflow=40)
    yield engine
    await engine.dispose()


TABLES = (
    "inbound_message, webhook_event, resend_request, delivery, announcement, idempotency_key, "
    "employee_user_id, identity_change, employer_choice, sender, employee, api_token, employer, worker, send_budget, "
    "template, template_sync, opt_out_hash"
)


async def _empty(engine: AsyncEngine) -> None:
    """TRUNCATE every table, retrying when PostgreSQL picks it as a deadlock victim.

    A process the previous test SIGKILLed can leave a backend that still holds row locks for a moment and waits for
    another table; TRUNCATE locks the tables one by one, so the two can deadlock (seen once in CI). PostgreSQL aborts
    one of them: when it is us, the other finishes and the next try goes through.
    """
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != "40P01" or attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on a database emptied before the test."""
    await _empty(engine)
    yield make_sessionmaker(engine)
    # Own numbers make `serve` and `worker` demand JEM_SECRET_KEY at start-up: a later test that starts them
    # before emptying the database must not inherit this test's senders.
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM sender"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        whatsapp_api_url=GRAPH_URL,
        whatsapp_access_token="test-graph-token",
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secrets=(APP_SECRET,),
        whatsapp_verify_token=VERIFY_TOKEN,
        whatsapp_template=None,
        send_rate=1000.0,
    )


@pytest.fixture
def template_settings(settings: Settings) -> Settings:
    return settings.replace(whatsapp_template=Template("staff_notice", "en_US"))


@pytest.fixture
def app(settings: Settings, db: async_sessionmaker[AsyncSession]) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        yield client


@dataclass(frozen=True)
class Tenant:
    employer_id: int
    slug: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeTenant = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def make_tenant(db: async_sessionmaker[AsyncSession]) -> MakeTenant:
    async def make(slug: str = "acme", name: str = "Acme Ltd", timezone: str = "Africa/Johannesburg") -> Tenant:
        token = generate_token()
        async with db() as session, session.begin():
            employer_id = (
                await session.execute(
                    text("INSERT INTO employer (slug, name, timezone) VALUES (:s, :n, :t) RETURNING id"),
                    {"s": slug, "n": name, "t": timezone},
                )
            ).scalar_one()
            await session.execute(
                text("INSERT INTO api_token (employer_id, token_hash) VALUES (:e, :h)"),
                {"e": employer_id, "h": hash_token(token)},
            )
        return Tenant(employer_id=employer_id, slug=slug, token=token)

    return make


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


@pytest.fixture
def graph_respx() -> Iterator[respx.MockRouter]:
    """respx routes for Graph sends made through `make_http_client` (the lean transport); see tests/graph_respx.py.

    Routes are relative to the test Graph URL: ``graph_respx.post(f"/{PHONE_NUMBER_ID}/messages").respond(...)``.
    The Litestar test client is not intercepted.
    """
    with respx.mock(base_url=GRAPH_URL, using=GRAPH_MOCKER) as router:
        yield router


async def tracker_for(db: async_sessionmaker[AsyncSession], delivery_id: int) -> str:
    """The `biz_opaque_callback_data` our dispatcher puts on a send of this delivery (this database's key)."""
    return (await load_tracker(db)).make(delivery_id)
