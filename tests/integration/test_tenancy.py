"""Tenancy: a token reaches its own employer's data only; another employer's ids answer 404."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import MakeTenant, Tenant

Client = AsyncTestClient[Litestar]


async def two_tenants(client: Client, make_tenant: MakeTenant) -> tuple[Tenant, Tenant, dict[str, Any], dict[str, Any]]:
    a = await make_tenant(slug="acme")
    b = await make_tenant(slug="globex", name="Globex")
    ra = await client.post(
        "/employees", json={"phone": "+27820000001", "name": "A's", "tags": ["x"]}, headers=a.headers
    )
    rb = await client.post(
        "/employees", json={"phone": "+27820000002", "name": "B's", "tags": ["x"]}, headers=b.headers
    )
    assert ra.status_code == rb.status_code == 201
    return a, b, ra.json(), rb.json()


async def test_other_employers_employee_is_404_and_unchanged(client: Client, make_tenant: MakeTenant) -> None:
    a, b, _, b_emp = await two_tenants(client, make_tenant)
    url = f"/employees/{b_emp['id']}"
    assert (await client.get(url, headers=a.headers)).status_code == 404
    assert (await client.patch(url, json={"name": "hijacked"}, headers=a.headers)).status_code == 404
    assert (await client.delete(url, headers=a.headers)).status_code == 404
    assert (await client.get(url, headers=b.headers)).json() == b_emp


async def test_lists_show_only_own_rows(client: Client, make_tenant: MakeTenant) -> None:
    a, b, a_emp, b_emp = await two_tenants(client, make_tenant)
    for tenant, own in ((a, a_emp), (b, b_emp)):
        for params in ({}, {"tag": "x"}, {"q": "'s"}, {"q": "+2782"}, {"include_inactive": "true"}):
            body = (await client.get("/employees", params=params, headers=tenant.headers)).json()
            assert [e["id"] for e in body["items"]] == [own["id"]], params
            assert body["total"] == 1


async def test_same_phone_is_a_different_employee_per_employer(client: Client, make_tenant: MakeTenant) -> None:
    a, b, a_emp, _ = await two_tenants(client, make_tenant)
    # B adds A's phone: a new employee of B's (201), A's employee untouched.
    response = await client.post("/employees", json={"phone": a_emp["phone"], "name": "B copy"}, headers=b.headers)
    assert response.status_code == 201
    assert response.json()["id"] != a_emp["id"]
    assert (await client.get(f"/employees/{a_emp['id']}", headers=a.headers)).json() == a_emp
    imported = await client.post(
        "/employees/import", json={"employees": [{"phone": a_emp["phone"], "name": "B again"}]}, headers=b.headers
    )
    assert imported.json() == {"created": 0, "updated": 1}
    assert (await client.get(f"/employees/{a_emp['id']}", headers=a.headers)).json() == a_emp


async def test_patch_to_a_phone_another_employer_uses_is_fine(client: Client, make_tenant: MakeTenant) -> None:
    a, _, a_emp, b_emp = await two_tenants(client, make_tenant)
    response = await client.patch(f"/employees/{a_emp['id']}", json={"phone": b_emp["phone"]}, headers=a.headers)
    assert response.status_code == 200
    assert response.json()["phone"] == b_emp["phone"]


async def test_cursor_from_one_employer_does_not_leak_another(client: Client, make_tenant: MakeTenant) -> None:
    a, b, _, _ = await two_tenants(client, make_tenant)
    rows = [{"phone": f"+2783{i:07d}", "name": f"A{i}"} for i in range(3)]
    await client.post("/employees/import", json={"employees": rows}, headers=a.headers)
    page = (await client.get("/employees", params={"limit": 1}, headers=a.headers)).json()
    assert page["next_cursor"]
    other = (await client.get("/employees", params={"cursor": page["next_cursor"]}, headers=b.headers)).json()
    assert all(e["name"] == "B's" for e in other["items"])
