from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import MakeTenant, Tenant
from tests.integration.test_webhook import URL, _delivery, _inbound, signed


async def test_inbox_lists_own_messages_newest_first_with_cursor(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant, make_tenant: MakeTenant
) -> None:
    await _delivery(db, tenant, "sent", "wamid.A1")
    for i in range(3):
        body = _inbound(f"wamid.M{i}", body=f"hello {i}")
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    first = (await client.get("/messages", params={"limit": 2}, headers=tenant.headers)).json()
    assert [m["text"] for m in first["items"]] == ["hello 2", "hello 1"]
    assert first["items"][0]["employee_name"] == "A"
    second = (await client.get("/messages", params={"cursor": first["next_cursor"]}, headers=tenant.headers)).json()
    assert [m["text"] for m in second["items"]] == ["hello 0"]
    assert second["next_cursor"] is None
    other = await make_tenant(slug="other")
    assert (await client.get("/messages", headers=other.headers)).json()["items"] == []
    assert (await client.get("/messages")).status_code == 401
