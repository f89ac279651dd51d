"""The one place errors become problem JSON: values the database rejects are a 422, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from bot.db.engine import make_engine
from bot.errors import EXCEPTION_HANDLERS
from tests.integration.test_webhook import signed


def probe_app(database_url: str) -> Litestar:
    """A throwaway app with the service's exception handlers; its engine lives in the app's own loop."""

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        app.state.engine = make_engine(database_url, pool_size=1, max_overflow=0)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    @get("/cast")
    async def cast(
        state: State, value: Annotated[str, QueryParameter()], kind: Annotated[str, QueryParameter()]
    ) -> str:
        sql = {
            "int": "SELECT CAST(CAST(:v AS text) AS int)",
            "bigint": "SELECT CAST(CAST(CAST(:v AS text) AS numeric) AS bigint)",
        }[kind]
        async with state.engine.connect() as conn:
            return str((await conn.execute(text(sql), {"v": value})).scalar())

    @get("/missing-table")
    async def missing_table(state: State) -> str:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    return Litestar(
        route_handlers=[cast, missing_table],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[database],
        debug=False,
    )


async def test_data_errors_from_the_database_are_422(database_url: str) -> None:
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        ok = await client.get("/cast", params={"value": "42", "kind": "int"})
        assert ok.status_code == 200
        for value, kind in (("abc", "int"), ("99999999999999999999999", "bigint")):
            response = await client.get("/cast", params={"value": value, "kind": kind})
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert value not in response.text


async def test_other_database_errors_stay_500_without_details(database_url: str) -> None:
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        response = await client.get("/missing-table")
    assert response.status_code == 500
    assert "no_such_table" not in response.text
    assert response.json()["detail"] == "an unexpected error occurred; it has been logged"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/announcements"),
        ("POST", "/employees"),
        ("POST", "/employees/import"),
        ("PATCH", "/announcements/1"),
        ("PATCH", "/employees/1"),
    ],
)
async def test_json_nested_a_thousand_deep_is_a_400_before_authentication(
    client: AsyncTestClient[Litestar], method: str, path: str
) -> None:
    body = "[" * 1000 + "]" * 1000  # 2 KB
    response = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 401), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text


async def test_a_signed_webhook_nested_a_thousand_deep_is_a_400(client: AsyncTestClient[Litestar]) -> None:
    body = ('{"entry":[{"changes":[{"field":"messages","value":' + "[" * 1000 + "]" * 1000 + "}]}]}").encode()
    response = await client.post("/webhooks/whatsapp", content=body, headers=signed(body))
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
