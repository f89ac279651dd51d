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


async def test_health_needs_no_token_and_reports_the_schema(client: AsyncTestClient[Litestar]) -> None:
    from bot.db.migrate import head_revision

    body = (await client.get("/health")).json()
    assert body["schema"] == head_revision()


async def test_health_recovers_its_503_without_a_500(settings: Settings) -> None:
    app = create_app(settings, database_url="postgresql+asyncpg://u:hunter2@127.0.0.1:1/x", check_schema_on_start=False)
    async with AsyncTestClient(app=app) as client:
        for _ in range(2):
            response = await client.get("/health")
            assert response.status_code == 503
            assert response.json()["status"] == "degraded"
            assert "hunter2" not in response.text


async def test_docs_and_openapi_are_public(client: AsyncTestClient[Litestar]) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    spec = (await client.get("/docs/openapi.json")).json()
    assert "/health" in spec["paths"]
    assert "/me" in spec["paths"]


async def test_openapi_lists_the_employee_endpoints_with_request_schemas(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/docs/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    schemas = spec["components"]["schemas"]
    expected = {
        ("/employees", "post"),
        ("/employees", "get"),
        ("/employees/import", "post"),
        ("/employees/{employee_id}", "get"),
        ("/employees/{employee_id}", "patch"),
        ("/employees/{employee_id}", "delete"),
    }
    for path, method in expected:
        assert method in paths.get(path, {}), (path, method)

    def request_schema(path: str, method: str) -> dict[str, object]:
        ref = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema: dict[str, object] = schemas[ref.rsplit("/", 1)[-1]]
        return schema

    upsert = request_schema("/employees", "post")
    # Only the phone: a field left out keeps the employee's value (a new employee needs a name, checked by the service).
    assert upsert["required"] == ["phone"]
    assert set(upsert["properties"]) >= {"phone", "name", "tags"}  # type: ignore[operator]
    assert set(request_schema("/employees/{employee_id}", "patch")["properties"]) >= {"phone", "name", "tags"}  # type: ignore[arg-type]
    assert request_schema("/employees/import", "post")["required"] == ["employees"]
    params = {p["name"] for p in paths["/employees"]["get"]["parameters"]}
    assert {"tag", "q", "limit", "cursor", "include_inactive"} <= params
    # The bearer scheme is declared so /docs can send the token.
    assert spec["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "jem_dispatch_backlog" in response.text
