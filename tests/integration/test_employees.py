"""Employees API (docs/api.md#employees): upsert, import, listing, pagination, errors."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Tenant

Client = AsyncTestClient[Litestar]


async def create(client: Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Thandi")
    response = await client.post("/employees", json=body, headers=tenant.headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def count_rows(db: async_sessionmaker[AsyncSession]) -> int:
    async with db() as session:
        return int((await session.execute(text("SELECT count(*) FROM employee"))).scalar_one())


def error_fields(response: Any) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


# --- POST /employees -----------------------------------------------------------------------------


async def test_post_creates_201_with_normalised_phone(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/employees",
        json={"phone": "+27 82 123 4567", "name": " Thandi ", "tags": ["Warehouse"]},
        headers=tenant.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["phone"] == "+27821234567"
    assert body["name"] == "Thandi"
    assert body["tags"] == ["warehouse"]
    assert body["active"] is True
    assert body["opted_out"] is False
    assert isinstance(body["id"], int)


@pytest.mark.parametrize("raw", ["+27 82 123 4567", "0027821234567", "+27-82-123-4567", "(+27) 82.123.4567"])
async def test_phone_forms_normalise_to_e164(client: Client, tenant: Tenant, raw: str) -> None:
    body = await create(client, tenant, phone=raw)
    assert body["phone"] == "+27821234567"


async def test_post_upserts_by_phone(client: Client, tenant: Tenant) -> None:
    first = await client.post(
        "/employees", json={"phone": "+27821234567", "name": "Thandi", "tags": ["a"]}, headers=tenant.headers
    )
    assert first.status_code == 201
    second = await client.post(
        "/employees", json={"phone": "0027 82 123 4567", "name": "Thandi M", "tags": ["b"]}, headers=tenant.headers
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["name"] == "Thandi M"
    assert second.json()["tags"] == ["b"]


async def test_upsert_reactivates_but_never_clears_opt_out(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    created = await create(client, tenant, phone="+27821234567")
    assert (await client.delete(f"/employees/{created['id']}", headers=tenant.headers)).status_code == 204
    async with db() as session, session.begin():
        await session.execute(text("UPDATE employee SET opted_out_at = now() WHERE id = :id"), {"id": created["id"]})
    again = await client.post("/employees", json={"phone": "+27821234567", "name": "Back"}, headers=tenant.headers)
    assert again.status_code == 200
    body = again.json()
    assert body["id"] == created["id"]
    assert body["active"] is True
    assert body["opted_out"] is True
    assert body["opted_out_at"] is not None


@pytest.mark.parametrize("phone", ["0821234567", "+27", "+2782123456789012345", "not a phone", "+0821234567", ""])
async def test_invalid_phone_is_422_naming_phone(client: Client, tenant: Tenant, phone: str) -> None:
    response = await client.post("/employees", json={"phone": phone, "name": "X"}, headers=tenant.headers)
    assert response.status_code == 422
    assert "phone" in error_fields(response)
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_missing_name_is_422_naming_name(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees", json={"phone": "+27821234567"}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["name"]


async def test_blank_name_is_422(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees", json={"phone": "+27821234567", "name": "   "}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["name"]


async def test_every_invalid_field_is_named(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees", json={"phone": "12", "name": " "}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["phone", "name"]


async def test_unknown_field_is_422(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/employees", json={"phone": "+27821234567", "name": "X", "email": "x@example.com"}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert error_fields(response) == ["email"]


async def test_wrong_type_is_422(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/employees", json={"phone": "+27821234567", "name": "X", "tags": "warehouse"}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert error_fields(response) == ["tags"]


async def test_malformed_json_is_400(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/employees",
        content=b'{"phone": "+27821234567", "name": ',
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"]


async def test_empty_body_is_400(client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]) -> None:
    response = await client.post(
        "/employees", content=b"", headers={**tenant.headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert await count_rows(db) == 0


async def test_non_object_body_is_4xx_not_500(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees", json=[1, 2], headers=tenant.headers)
    assert response.status_code in (400, 422)


# --- POST /employees/import ----------------------------------------------------------------------


async def test_import_creates_and_updates(client: Client, tenant: Tenant) -> None:
    await create(client, tenant, phone="+27820000001", name="Old")
    rows = [
        {"phone": "+27820000001", "name": "Updated"},
        {"phone": "+27 82 000 0002", "name": "New 2", "tags": ["x"]},
        {"phone": "0027820000003", "name": "New 3"},
    ]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {"created": 2, "updated": 1}
    listed = (await client.get("/employees", headers=tenant.headers)).json()
    assert listed["total"] == 3
    assert {e["phone"]: e["name"] for e in listed["items"]} == {
        "+27820000001": "Updated",
        "+27820000002": "New 2",
        "+27820000003": "New 3",
    }


async def test_import_lists_every_bad_row_and_writes_nothing(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    rows = [
        {"phone": "+27820000001", "name": "Good"},
        {"phone": "bad", "name": "Bad phone"},
        {"phone": "+27820000003"},
        {"phone": "+27820000004", "name": "Good too"},
        {"phone": "+27820000005", "name": "X", "colour": "red"},
        {"phone": "+27820000006", "name": "  "},
        "not an object",
    ]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == [
        "employees[1].phone",
        "employees[2].name",
        "employees[4].colour",
        "employees[5].name",
        "employees[6]",
    ]
    assert await count_rows(db) == 0


async def test_import_duplicate_phones_inside_one_import_is_422(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    rows = [{"phone": "+27820000001", "name": "A"}, {"phone": "0027 82 000 0001", "name": "B"}]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["employees[1].phone"]
    assert "employees[0]" in response.json()["errors"][0]["message"]
    assert await count_rows(db) == 0


async def test_import_over_the_limit_is_422(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    rows = [{"phone": f"+2782{i:07d}", "name": "N"} for i in range(10_001)]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["employees"]
    assert await count_rows(db) == 0


async def test_import_of_exactly_ten_thousand_rows_succeeds(client: Client, tenant: Tenant) -> None:
    rows = [{"phone": f"+2782{i:07d}", "name": f"N{i}", "tags": ["bulk"]} for i in range(10_000)]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {"created": 10_000, "updated": 0}


async def test_import_needs_the_employees_key(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees/import", json={}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["employees"]
    response = await client.post("/employees/import", json={"rows": []}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["rows"]


async def test_import_of_nothing_is_zero(client: Client, tenant: Tenant) -> None:
    response = await client.post("/employees/import", json={"employees": []}, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {"created": 0, "updated": 0}


# --- GET /employees ------------------------------------------------------------------------------


async def seed(client: Client, tenant: Tenant) -> list[dict[str, Any]]:
    people = [
        ("+27820000001", "Alice Dlamini", ["warehouse"]),
        ("+27820000002", "Bongani Zulu", ["drivers"]),
        ("+27820000003", "Carla Smit", ["office"]),
        ("+27830000004", "Dumisani 100%", ["warehouse", "drivers"]),
    ]
    return [await create(client, tenant, phone=p, name=n, tags=t) for p, n, t in people]


async def test_list_is_newest_first_with_total(client: Client, tenant: Tenant) -> None:
    created = await seed(client, tenant)
    body = (await client.get("/employees", headers=tenant.headers)).json()
    assert [e["id"] for e in body["items"]] == [e["id"] for e in reversed(created)]
    assert body["total"] == 4
    assert body["next_cursor"] is None


async def test_tag_filter_is_repeatable_any_of(client: Client, tenant: Tenant) -> None:
    await seed(client, tenant)
    one = (await client.get("/employees", params={"tag": "warehouse"}, headers=tenant.headers)).json()
    assert sorted(e["name"] for e in one["items"]) == ["Alice Dlamini", "Dumisani 100%"]
    assert one["total"] == 2
    both = (
        await client.get("/employees", params=[("tag", "office"), ("tag", "drivers")], headers=tenant.headers)
    ).json()
    assert sorted(e["name"] for e in both["items"]) == ["Bongani Zulu", "Carla Smit", "Dumisani 100%"]
    assert both["total"] == 3
    none = (await client.get("/employees", params={"tag": "nobody"}, headers=tenant.headers)).json()
    assert none == {"items": [], "next_cursor": None, "total": 0}


async def test_empty_filters_mean_no_filter(client: Client, tenant: Tenant) -> None:
    await seed(client, tenant)
    body = (await client.get("/employees?tag=&q=", headers=tenant.headers)).json()
    assert body["total"] == 4
    tagged = (await client.get("/employees", params={"tag": " Warehouse "}, headers=tenant.headers)).json()
    assert tagged["total"] == 2


async def test_q_searches_name_and_phone(client: Client, tenant: Tenant) -> None:
    await seed(client, tenant)

    async def names(q: str) -> list[str]:
        body = (await client.get("/employees", params={"q": q}, headers=tenant.headers)).json()
        assert body["total"] == len(body["items"])
        return sorted(e["name"] for e in body["items"])

    assert await names("zulu") == ["Bongani Zulu"]
    assert await names("+2783") == ["Dumisani 100%"]
    assert await names("0000003") == ["Carla Smit"]
    assert await names("100%") == ["Dumisani 100%"]
    # `%` and `_` are literal characters, not wildcards.
    assert await names("%") == ["Dumisani 100%"]
    assert await names("_") == []


async def test_cursor_pagination_walks_every_row_once(client: Client, tenant: Tenant) -> None:
    rows = [{"phone": f"+2782{i:07d}", "name": f"N{i}"} for i in range(23)]
    assert (await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)).status_code == 200
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/employees", params=params, headers=tenant.headers)).json()
        assert body["total"] == 23
        assert len(body["items"]) <= 5
        seen += [e["id"] for e in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert seen == sorted(seen, reverse=True)


async def test_exact_page_has_no_next_cursor(client: Client, tenant: Tenant) -> None:
    await seed(client, tenant)
    body = (await client.get("/employees", params={"limit": 4}, headers=tenant.headers)).json()
    assert len(body["items"]) == 4
    assert body["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "many"])
async def test_bad_limit_is_422(client: Client, tenant: Tenant, limit: str) -> None:
    response = await client.get("/employees", params={"limit": limit}, headers=tenant.headers)
    assert response.status_code == 422
    assert "limit" in error_fields(response)


async def test_limit_500_is_fine(client: Client, tenant: Tenant) -> None:
    assert (await client.get("/employees", params={"limit": 500}, headers=tenant.headers)).status_code == 200


@pytest.mark.parametrize("cursor", ["garbage!", "aWQ6eA", "Zm9vOjE", "%%%"])
async def test_bad_cursor_is_422(client: Client, tenant: Tenant, cursor: str) -> None:
    response = await client.get("/employees", params={"cursor": cursor}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["cursor"]


# --- GET / PATCH / DELETE /employees/{id} --------------------------------------------------------


async def test_get_by_id(client: Client, tenant: Tenant) -> None:
    created = await create(client, tenant, phone="+27821234567", tags=["a"])
    response = await client.get(f"/employees/{created['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_id_is_404(client: Client, tenant: Tenant) -> None:
    response = await client.get("/employees/999999", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["detail"]


async def test_patch_changes_fields(client: Client, tenant: Tenant) -> None:
    created = await create(client, tenant, phone="+27821234567", tags=["a"])
    response = await client.patch(
        f"/employees/{created['id']}",
        json={"name": "New Name", "tags": ["B", "b"], "phone": "0027 83 000 0000"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["tags"], body["phone"]) == ("New Name", ["b"], "+27830000000")
    assert (await client.get(f"/employees/{created['id']}", headers=tenant.headers)).json() == body


async def test_patch_validation(client: Client, tenant: Tenant) -> None:
    created = await create(client, tenant, phone="+27821234567")
    bad_phone = await client.patch(f"/employees/{created['id']}", json={"phone": "12"}, headers=tenant.headers)
    assert bad_phone.status_code == 422
    assert error_fields(bad_phone) == ["phone"]
    unknown = await client.patch(f"/employees/{created['id']}", json={"opted_out": False}, headers=tenant.headers)
    assert unknown.status_code == 422
    assert error_fields(unknown) == ["opted_out"]
    missing = await client.patch("/employees/999999", json={"name": "X"}, headers=tenant.headers)
    assert missing.status_code == 404


async def test_patch_to_another_employees_phone_is_409(client: Client, tenant: Tenant) -> None:
    a = await create(client, tenant, phone="+27820000001", name="A")
    b = await create(client, tenant, phone="+27820000002", name="B")
    response = await client.patch(
        f"/employees/{b['id']}", json={"phone": "+27 82 000 0001", "name": "Changed"}, headers=tenant.headers
    )
    assert response.status_code == 409
    assert response.json()["detail"]
    # Nothing of the rejected PATCH was applied.
    assert (await client.get(f"/employees/{b['id']}", headers=tenant.headers)).json() == b
    assert (await client.get(f"/employees/{a['id']}", headers=tenant.headers)).json() == a


async def test_delete_deactivates_and_keeps_the_employee(client: Client, tenant: Tenant) -> None:
    keep = await create(client, tenant, phone="+27820000001", name="Keep")
    gone = await create(client, tenant, phone="+27820000002", name="Gone")
    response = await client.delete(f"/employees/{gone['id']}", headers=tenant.headers)
    assert response.status_code == 204
    assert response.content == b""

    fetched = (await client.get(f"/employees/{gone['id']}", headers=tenant.headers)).json()
    assert fetched["active"] is False
    assert fetched["name"] == "Gone"

    default = (await client.get("/employees", headers=tenant.headers)).json()
    assert [e["id"] for e in default["items"]] == [keep["id"]]
    assert default["total"] == 1
    everyone = (await client.get("/employees", params={"include_inactive": "true"}, headers=tenant.headers)).json()
    assert [e["id"] for e in everyone["items"]] == [gone["id"], keep["id"]]
    assert everyone["total"] == 2

    # Deleting again is harmless; an unknown id is 404.
    assert (await client.delete(f"/employees/{gone['id']}", headers=tenant.headers)).status_code == 204
    assert (await client.delete("/employees/999999", headers=tenant.headers)).status_code == 404


async def test_opted_out_is_shown_and_filterable(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    a = await create(client, tenant, phone="+27820000001", name="A")
    b = await create(client, tenant, phone="+27820000002", name="B")
    async with db() as session, session.begin():
        await session.execute(text("UPDATE employee SET opted_out_at = now() WHERE id = :id"), {"id": a["id"]})
    assert (await client.get(f"/employees/{a['id']}", headers=tenant.headers)).json()["opted_out"] is True
    assert (await client.get(f"/employees/{b['id']}", headers=tenant.headers)).json()["opted_out"] is False
    out = (await client.get("/employees", params={"opted_out": "true"}, headers=tenant.headers)).json()
    assert [e["id"] for e in out["items"]] == [a["id"]]
    # PATCH cannot clear an opt-out (only the employee's START can).
    patched = await client.patch(f"/employees/{a['id']}", json={"name": "A2"}, headers=tenant.headers)
    assert patched.json()["opted_out"] is True


@pytest.mark.parametrize("employee_id", ["99999999999999999999", "9223372036854775808"])
async def test_ids_beyond_bigint_are_404_not_500(client: Client, tenant: Tenant, employee_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/employees/{employee_id}", headers=tenant.headers)
        assert response.status_code == 404, (method, response.text)
    response = await client.patch(f"/employees/{employee_id}", json={"name": "X"}, headers=tenant.headers)
    assert response.status_code == 404


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_upserts_of_one_phone_make_one_employee(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    import asyncio

    responses = await asyncio.gather(
        *(
            client.post("/employees", json={"phone": "+27821234567", "name": f"N{i}"}, headers=tenant.headers)
            for i in range(12)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 11 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_rows(db) == 1


async def test_concurrent_overlapping_imports_do_not_deadlock(
    db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    """Four imports of the same rows in different orders, each on its own connection, at once.

    Driven through the service with a session each: the in-process test client runs requests one after
    the other, which would hide the lock-order deadlock this guards against.
    """
    import asyncio

    from bot.employees import service

    rows: list[object] = [{"phone": f"+2782{i:07d}", "name": f"N{i}"} for i in range(10_000)]
    batches = [rows, rows[::-1], rows[::2] + rows[1::2], rows[1::2][::-1] + rows[::2]]

    async def run(batch: list[object]) -> tuple[int, int]:
        async with db() as session:
            result = await service.import_all(session, tenant.employer_id, batch, hasher=None)
            await session.commit()
            return result.created, result.updated

    results = await asyncio.gather(*(run(b) for b in batches))
    assert sum(created for created, _ in results) == 10_000
    assert sum(updated for _, updated in results) == 30_000
    assert await count_rows(db) == 10_000


async def test_a_body_over_the_limit_is_413(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    rows = [{"phone": f"+2782{i:07d}", "name": "N" * 190} for i in range(45_000)]
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 413
    assert response.json()["status"] == 413
    assert await count_rows(db) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_other_content_types_are_4xx(client: Client, tenant: Tenant, content_type: str | None) -> None:
    headers = dict(tenant.headers)
    if content_type:
        headers["content-type"] = content_type
    response = await client.post("/employees", content=b'{"phone": "+27821234567", "name": "X"}', headers=headers)
    assert response.status_code < 500


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"include_inactive": "maybe"}, "include_inactive"),
        ({"opted_out": "perhaps"}, "opted_out"),
        ({"q": "x" * 201}, "q"),
    ],
)
async def test_bad_query_parameters_are_422_naming_them(
    client: Client, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = await client.get("/employees", params=params, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == [field]


@pytest.mark.parametrize("path", ["/employees/0", "/employees/-5", "/employees/abc", "/employees/1.5"])
async def test_odd_ids_are_404(client: Client, tenant: Tenant, path: str) -> None:
    response = await client.get(path, headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["status"] == 404


# --- fields not sent are kept (issue 18) -----------------------------------------------------------


async def test_upsert_changes_only_the_fields_sent(client: Client, tenant: Tenant) -> None:
    first = await create(client, tenant, phone="+27825550001", name="Thandi", tags=["warehouse", "drivers"])

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post("/employees", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert result["id"] == first["id"]
        return result

    # The proof of concept's client sends phone and name only: the tags stay.
    renamed = await post({"phone": "+27 82 555 0001", "name": "Thandi M."})
    assert (renamed["name"], renamed["tags"]) == ("Thandi M.", ["warehouse", "drivers"])
    retagged = await post({"phone": "+27825550001", "tags": ["office"]})
    assert (retagged["name"], retagged["tags"]) == ("Thandi M.", ["office"])
    same = await post({"phone": "+27825550001"})
    assert (same["name"], same["tags"]) == ("Thandi M.", ["office"])
    cleared = await post({"phone": "+27825550001", "tags": []})
    assert (cleared["name"], cleared["tags"]) == ("Thandi M.", [])


async def test_upsert_of_a_phone_alone_reactivates_and_keeps_the_rest(client: Client, tenant: Tenant) -> None:
    made = await create(client, tenant, phone="+27825550002", name="Sipho", tags=["yard"])
    assert (await client.delete(f"/employees/{made['id']}", headers=tenant.headers)).status_code == 204
    back = await client.post("/employees", json={"phone": "+27825550002"}, headers=tenant.headers)
    assert back.status_code == 200
    assert (back.json()["active"], back.json()["name"], back.json()["tags"]) == (True, "Sipho", ["yard"])


async def test_a_new_employee_needs_a_name_and_gets_no_tags_by_default(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    nameless = await client.post("/employees", json={"phone": "+27825550003", "tags": ["x"]}, headers=tenant.headers)
    assert nameless.status_code == 422
    assert error_fields(nameless) == ["name"]
    assert "new employee" in nameless.json()["errors"][0]["message"]
    assert await count_rows(db) == 0
    # Every bad field at once: the phone and the missing name of an unknown phone cannot both be told, the phone is.
    both = await client.post("/employees", json={"phone": "082", "name": " "}, headers=tenant.headers)
    assert error_fields(both) == ["phone", "name"]
    created = await client.post("/employees", json={"phone": "+27825550003", "name": "Lerato"}, headers=tenant.headers)
    assert created.status_code == 201
    assert created.json()["tags"] == []


async def test_import_changes_only_the_fields_each_row_sends(client: Client, tenant: Tenant) -> None:
    await create(client, tenant, phone="+27825550010", name="Johan", tags=["drivers"])
    await create(client, tenant, phone="+27825550011", name="Ayesha", tags=["office"])
    rows = [
        {"phone": "+27825550010", "name": "Johan B."},
        {"phone": "+27825550011", "tags": []},
        {"phone": "+27825550012", "name": "Nomsa"},
    ]
    result = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert result.json() == {"created": 1, "updated": 2}
    listed = (await client.get("/employees", headers=tenant.headers)).json()["items"]
    found = {e["phone"]: (e["name"], e["tags"]) for e in listed}
    assert found == {
        "+27825550010": ("Johan B.", ["drivers"]),
        "+27825550011": ("Ayesha", []),
        "+27825550012": ("Nomsa", []),
    }


async def test_import_refuses_a_new_phone_without_a_name_with_the_other_bad_rows(
    client: Client, tenant: Tenant, db: async_sessionmaker[AsyncSession]
) -> None:
    await create(client, tenant, phone="+27825550020", name="Pieter")
    before = await count_rows(db)
    rows = (
        [
            {"phone": "+27825550020"},  # known: fine without a name
            {"phone": "+27825550021"},  # new: needs one
            {"phone": "bad", "name": "X"},
        ]
        + [{"phone": f"+278255501{i:02d}", "name": f"P{i}"} for i in range(8)]
        + [{"phone": "+27825550022"}]
    )
    response = await client.post("/employees/import", json={"employees": rows}, headers=tenant.headers)
    assert response.status_code == 422
    assert error_fields(response) == ["employees[1].name", "employees[2].phone", "employees[11].name"]
    assert await count_rows(db) == before
