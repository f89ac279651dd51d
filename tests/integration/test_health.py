from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from bot.app import create_app
from bot.settings import Settings


async def test_health_reports_database_ok(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


async def test_health_answers_503_when_the_database_is_unreachable(settings: Settings) -> None:
    # Port 1 on loopback refuses connections at once: a database that is down.
    app = create_app(settings, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none", check_schema_on_start=False)
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


async def test_docs_and_openapi_are_public(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/docs/openapi.json")).json()
    assert "/employees" in spec["paths"]
    assert "/health" in spec["paths"]


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "jem_dispatch_backlog" in response.text
