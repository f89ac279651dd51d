"""Announcements API: create/validate, read with ledger counts, list, deliveries, patch, cancel, resend, tenancy.

Deliveries are inserted with SQL, standing in for the dispatcher's fan-out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import MakeTenant, Tenant

Client = AsyncTestClient[Litestar]
SEED = {"message": "Payday is Friday.", "send_time": "2026-12-01T09:00:00+02:00"}
Db = async_sessionmaker[AsyncSession]


async def employees(db: Db, employer_id: int, n: int, tag: str = "warehouse") -> list[int]:
    async with db() as session:
        ids = [
            (
                await session.execute(
                    text(
                        "INSERT INTO employee (employer_id, phone, name, tags) VALUES (:e, :p, :n, ARRAY[:t]) "
                        "RETURNING id"
                    ),
                    {"e": employer_id, "p": f"+2782{employer_id:03d}{i:04d}", "n": f"Worker {i}", "t": tag},
                )
            ).scalar_one()
            for i in range(n)
        ]
        await session.commit()
    return ids


async def deliver(db: Db, employer_id: int, announcement_id: int, rows: list[tuple[int, str, dict[str, Any]]]) -> None:
    """What fan-out and the sender would have written: (employee_id, status, extra columns)."""
    async with db() as session:
        for employee_id, status, extra in rows:
            columns = ", ".join(["employer_id", "announcement_id", "employee_id", "kind", "status", *extra])
            values = ", ".join([":e", ":a", ":emp", "'announcement'", ":s", *(f":{k}" for k in extra)])
            await session.execute(
                text(f"INSERT INTO delivery ({columns}) VALUES ({values})"),
                {"e": employer_id, "a": announcement_id, "emp": employee_id, "s": status, **extra},
            )
        await session.commit()


async def set_status(db: Db, announcement_id: int, status: str) -> None:
    async with db() as session:
        await session.execute(
            text("UPDATE announcement SET status = :s WHERE id = :id"), {"s": status, "id": announcement_id}
        )
        await session.commit()


async def create(client: Client, tenant: Tenant, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post("/announcements", json=body or SEED, headers=tenant.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_seed_body_is_accepted_as_is(client: Client, tenant: Tenant) -> None:
    created = await create(client, tenant)
    assert created["message"] == SEED["message"]
    assert datetime.fromisoformat(created["send_time"]) == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert created["status"] == "scheduled"
    assert created["audience"] == {"all": True}
    assert created["counts"]["total"] == 0
    fetched = await client.get(f"/announcements/{created['id']}", headers=tenant.headers)
    assert fetched.json() == created


async def test_absent_null_and_past_send_time_mean_now(client: Client, tenant: Tenant) -> None:
    before = datetime.now(UTC)
    for body in (
        {"message": "a"},
        {"message": "b", "send_time": None},
        {"message": "c", "send_time": "2020-01-01T00:00:00Z"},
    ):
        sent = datetime.fromisoformat((await create(client, tenant, body))["send_time"])
        assert before - timedelta(seconds=1) <= sent <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"message": "   "}, "message", "1–4096"),
        ({"message": "x" * 4097}, "message", "4096"),
        ({"message": "hi", "send_time": "2026-12-01T09:00:00"}, "send_time", "UTC offset"),
        ({"message": "hi", "send_time": "next tuesday"}, "send_time", "ISO 8601"),
        ({"message": "hi", "audience": {"tags": []}}, "audience.tags", "at least one"),
        ({"message": "hi", "audience": {"all": True, "tags": ["a"]}}, "audience", "exactly one"),
        ({"message": "hi", "audience": {}}, "audience", "exactly one"),
        ({"message": "hi", "audience": {"all": False}}, "audience.all", "true"),
        ({"message": "hi", "audience": {"employee_ids": []}}, "audience.employee_ids", "at least one"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    client: Client, tenant: Tenant, body: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post("/announcements", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in errors
    assert words in errors[field]


async def test_every_invalid_field_is_named_at_once(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/announcements", json={"message": "", "send_time": "2026-12-01T09:00"}, headers=tenant.headers
    )
    assert {e["field"] for e in response.json()["errors"]} == {"message", "send_time"}


async def test_unknown_and_foreign_employee_ids_are_listed(client: Client, make_tenant: MakeTenant, db: Db) -> None:
    a = await make_tenant("a-co")
    b = await make_tenant("b-co")
    (mine,) = await employees(db, a.employer_id, 1)
    (theirs,) = await employees(db, b.employer_id, 1)
    response = await client.post(
        "/announcements",
        json={"message": "hi", "audience": {"employee_ids": [mine, theirs, 999999]}},
        headers=a.headers,
    )
    assert response.status_code == 422
    message = response.json()["errors"][0]["message"]
    assert str(theirs) in message
    assert "999999" in message
    assert f"{mine}," not in message
    ok = await create(client, a, {"message": "hi", "audience": {"employee_ids": [mine]}})
    assert ok["audience"] == {"employee_ids": [mine]}


async def test_tags_audience_is_stored_folded(client: Client, tenant: Tenant) -> None:
    created = await create(
        client, tenant, {"message": "hi", "audience": {"tags": [" Warehouse ", "warehouse", "Yard"]}}
    )
    assert created["audience"] == {"tags": ["warehouse", "yard"]}


async def test_counts_come_from_the_ledger_and_add_up(client: Client, tenant: Tenant, db: Db) -> None:
    ann = await create(client, tenant)
    ids = await employees(db, tenant.employer_id, 9)
    now = datetime.now(UTC)
    statuses = ["pending", "sending", "sent", "delivered", "read", "failed", "unknown", "cancelled", "skipped"]
    await deliver(
        db,
        tenant.employer_id,
        ann["id"],
        [
            (e, s, {"acknowledged_at": now} if s in ("read", "delivered") else {})
            for e, s in zip(ids, statuses, strict=True)
        ],
    )
    counts = (await client.get(f"/announcements/{ann['id']}", headers=tenant.headers)).json()["counts"]
    assert counts == {**dict.fromkeys(statuses, 1), "total": 9, "acknowledged": 2}
    assert sum(counts[s] for s in statuses) == counts["total"]
    listed = (await client.get("/announcements", headers=tenant.headers)).json()["items"]
    assert listed[0]["counts"] == counts


async def test_list_is_newest_first_filtered_and_paginated(client: Client, tenant: Tenant, db: Db) -> None:
    made = [(await create(client, tenant, {"message": f"m{i}"}))["id"] for i in range(5)]
    await set_status(db, made[1], "completed")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/announcements", params=params, headers=tenant.headers)).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    done = (await client.get("/announcements", params={"status": "completed"}, headers=tenant.headers)).json()
    assert [a["id"] for a in done["items"]] == [made[1]]
    bad = await client.get("/announcements", params={"status": "nope"}, headers=tenant.headers)
    assert bad.status_code in (400, 422)


async def test_deliveries_masked_filtered_searched_paginated(client: Client, tenant: Tenant, db: Db) -> None:
    ann = await create(client, tenant)
    ids = await employees(db, tenant.employer_id, 4)
    now = datetime.now(UTC)
    await deliver(
        db,
        tenant.employer_id,
        ann["id"],
        [
            (ids[0], "failed", {"error_code": 131026, "error_title": "Message undeliverable", "attempts": 1}),
            (ids[1], "read", {"sent_at": now, "delivered_at": now, "read_at": now, "acknowledged_at": now}),
            (ids[2], "skipped", {"skip_reason": "opted_out"}),
            (ids[3], "sent", {"sent_at": now}),
        ],
    )
    url = f"/announcements/{ann['id']}/deliveries"
    page = (await client.get(url, headers=tenant.headers)).json()
    assert len(page["items"]) == 4
    assert page["next_cursor"] is None
    by_emp = {d["employee_id"]: d for d in page["items"]}
    assert by_emp[ids[0]]["error"] == {"code": 131026, "title": "Message undeliverable"}
    assert by_emp[ids[1]]["error"] is None
    assert by_emp[ids[1]]["acknowledged_at"] is not None
    assert by_emp[ids[2]]["skip_reason"] == "opted_out"
    assert all("•" in d["phone"] and d["phone"].startswith("+27") for d in page["items"])
    assert (await client.get(url, params={"status": "failed"}, headers=tenant.headers)).json()["items"][0][
        "employee_id"
    ] == ids[0]
    acked = (await client.get(url, params={"acknowledged": "true"}, headers=tenant.headers)).json()["items"]
    assert [d["employee_id"] for d in acked] == [ids[1]]
    unacked = (await client.get(url, params={"acknowledged": "false"}, headers=tenant.headers)).json()["items"]
    assert len(unacked) == 3
    named = (await client.get(url, params={"q": "worker 2"}, headers=tenant.headers)).json()["items"]
    assert [d["employee_id"] for d in named] == [ids[2]]
    phone = (await client.get(url, params={"q": f"{tenant.employer_id:03d}0003"}, headers=tenant.headers)).json()
    assert [d["employee_id"] for d in phone["items"]] == [ids[3]]
    first = (await client.get(url, params={"limit": 3}, headers=tenant.headers)).json()
    rest = (await client.get(url, params={"limit": 3, "cursor": first["next_cursor"]}, headers=tenant.headers)).json()
    assert len(first["items"]) == 3
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def test_patch_only_while_scheduled(client: Client, tenant: Tenant, db: Db) -> None:
    ann = await create(client, tenant)
    url = f"/announcements/{ann['id']}"
    changed = await client.patch(
        url, json={"message": " New text ", "audience": {"tags": ["yard"]}}, headers=tenant.headers
    )
    assert changed.status_code == 200
    assert changed.json()["message"] == "New text"
    assert changed.json()["audience"] == {"tags": ["yard"]}
    assert changed.json()["send_time"] == ann["send_time"]
    bad = await client.patch(url, json={"send_time": "2026-12-01T09:00:00"}, headers=tenant.headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "send_time"
    for status in ("dispatching", "completed", "cancelled"):
        await set_status(db, ann["id"], status)
        assert (await client.patch(url, json={"message": "x"}, headers=tenant.headers)).status_code == 409
    assert (await client.get(url, headers=tenant.headers)).json()["message"] == "New text"


async def test_cancel_in_each_state(client: Client, tenant: Tenant, db: Db) -> None:
    scheduled = await create(client, tenant)
    response = await client.post(f"/announcements/{scheduled['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None
    assert (await client.post(f"/announcements/{scheduled['id']}/cancel", headers=tenant.headers)).status_code == 409

    dispatching = await create(client, tenant)
    await set_status(db, dispatching["id"], "dispatching")
    ids = await employees(db, tenant.employer_id, 4)
    await deliver(
        db,
        tenant.employer_id,
        dispatching["id"],
        [(ids[0], "pending", {}), (ids[1], "pending", {}), (ids[2], "sending", {}), (ids[3], "sent", {})],
    )
    response = await client.post(f"/announcements/{dispatching['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    counts = response.json()["counts"]
    assert (counts["cancelled"], counts["sending"], counts["sent"], counts["pending"]) == (2, 1, 1, 0)
    async with db() as session:
        stamped = (
            await session.execute(
                text("SELECT count(*) FROM delivery WHERE status = 'cancelled' AND cancelled_at IS NOT NULL")
            )
        ).scalar_one()
    assert stamped == 2

    completed = await create(client, tenant)
    await set_status(db, completed["id"], "completed")
    assert (await client.post(f"/announcements/{completed['id']}/cancel", headers=tenant.headers)).status_code == 409


async def test_resend_unknown_requeues_and_records_who(client: Client, tenant: Tenant, db: Db) -> None:
    ann = await create(client, tenant)
    await set_status(db, ann["id"], "completed")
    ids = await employees(db, tenant.employer_id, 3)
    await deliver(
        db,
        tenant.employer_id,
        ann["id"],
        [
            (ids[0], "unknown", {"claimed_by": "w1", "error_title": "read timeout"}),
            (ids[1], "unknown", {}),
            (ids[2], "delivered", {}),
        ],
    )
    url = f"/announcements/{ann['id']}/resend-unknown"
    response = await client.post(url, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["resent"] == 2
    assert response.json()["announcement_id"] == ann["id"]
    async with db() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT status, resend_count, claimed_by, next_attempt_at <= now() AS due, error_title "
                    "FROM delivery "
                    "WHERE announcement_id = :a AND employee_id = ANY(:ids)"
                ),
                {"a": ann["id"], "ids": ids[:2]},
            )
        ).all()
        assert [tuple(r) for r in rows] == [("pending", 1, None, True, None)] * 2
        audit = (
            await session.execute(
                text(
                    "SELECT r.deliveries, t.employer_id FROM resend_request r "
                    "JOIN api_token t ON t.id = r.api_token_id "
                    "WHERE r.announcement_id = :a"
                ),
                {"a": ann["id"]},
            )
        ).one()
        assert tuple(audit) == (2, tenant.employer_id)
    assert (await client.get(f"/announcements/{ann['id']}", headers=tenant.headers)).json()["status"] == "dispatching"
    again = await client.post(url, headers=tenant.headers)
    assert again.status_code == 200
    assert again.json()["resent"] == 0
    await set_status(db, ann["id"], "cancelled")
    assert (await client.post(url, headers=tenant.headers)).status_code == 409


async def test_other_employers_announcements_are_404(client: Client, make_tenant: MakeTenant) -> None:
    a = await make_tenant("a-co")
    b = await make_tenant("b-co")
    ann = await create(client, a)
    base = f"/announcements/{ann['id']}"
    assert (await client.get(base, headers=b.headers)).status_code == 404
    assert (await client.get(f"{base}/deliveries", headers=b.headers)).status_code == 404
    assert (await client.patch(base, json={"message": "x"}, headers=b.headers)).status_code == 404
    assert (await client.post(f"{base}/cancel", headers=b.headers)).status_code == 404
    assert (await client.post(f"{base}/resend-unknown", headers=b.headers)).status_code == 404
    assert (await client.get("/announcements", headers=b.headers)).json()["items"] == []
    assert (await client.get(base, headers=a.headers)).json()["status"] == "scheduled"
    assert (await client.post("/announcements", json=SEED)).status_code == 401


async def test_openapi_documents_the_idempotency_rules(client: Client) -> None:
    spec = (await client.get("/docs/openapi.json")).json()
    post = spec["paths"]["/announcements"]["post"]
    assert "Idempotency-Key" in post["description"]
    assert "byte for byte" in post["description"]
    assert any(p["name"].lower() == "idempotency-key" for p in post["parameters"])
    assert "201" in post["responses"]
    assert "409" in post["responses"]
