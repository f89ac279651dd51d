"""Reminders (docs/api.md#reminders) against real PostgreSQL: who a reminder reaches, decided at fan-out; the
acknowledgement chain; `remind_after` made once whatever races; the API's answers and the detail's numbers.

Originals' deliveries are written with SQL (standing in for the dispatcher and Meta's statuses); acknowledgements
arrive as signed webhooks; reminders fan out through the real fan-out, and one test sends through the dispatcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query
from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import GraphClient, make_http_client
from bot.ledger import completion, fanout
from bot.settings import Settings
from tests.conftest import MakeTenant, Tenant
from tests.integration.test_dispatch_outcomes import GraphStub
from tests.integration.test_webhook import URL, signed

Client = AsyncTestClient[Litestar]
Db = async_sessionmaker[AsyncSession]


def phone(employer_id: int, i: int) -> str:
    return f"+2783{employer_id:03d}{i:04d}"


async def employees(db: Db, employer_id: int, n: int) -> list[int]:
    async with db() as s, s.begin():
        return [
            (
                await s.execute(
                    text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, :n) RETURNING id"),
                    {"e": employer_id, "p": phone(employer_id, i), "n": f"Worker {i}"},
                )
            ).scalar_one()
            for i in range(n)
        ]


async def sent_original(db: Db, employer_id: int, rows: list[tuple[int, str]], *, status: str = "completed") -> int:
    """An announcement already fanned out and sent: one delivery per (employee_id, status), wamid `wamid.<a>.<e>`."""
    async with db() as s, s.begin():
        aid = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, status, audience, dispatched_at, "
                    "completed_at) VALUES (:e, 'Fire drill at 14:00', now(), :st, '{\"all\": true}', now(), "
                    "CASE WHEN :st = 'completed' THEN now() END) RETURNING id"
                ),
                {"e": employer_id, "st": status},
            )
        ).scalar_one()
        await reached(s, employer_id, aid, rows)
    return int(aid)


async def reached(s: AsyncSession, employer_id: int, aid: int, rows: list[tuple[int, str]]) -> None:
    for emp, st in rows:
        await s.execute(
            text(
                "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid) "
                "VALUES (:e, :a, :emp, 'announcement', :s, :w) "
                "ON CONFLICT (announcement_id, employee_id) DO UPDATE SET status = :s, wamid = :w"
            ),
            {"e": employer_id, "a": aid, "emp": emp, "s": st, "w": f"wamid.{aid}.{emp}"},
        )


async def ack(client: Client, db: Db, announcement_id: int, employee_id: int) -> None:
    """The employee taps the button under the message of ``announcement_id`` (a signed webhook, as Meta sends it)."""
    async with db() as s:
        p = (await s.execute(text("SELECT phone FROM employee WHERE id = :i"), {"i": employee_id})).scalar_one()
    msg = {
        "from": p.lstrip("+"),
        "id": f"wamid.tap.{announcement_id}.{employee_id}",
        "timestamp": "1760000000",
        "type": "button",
        "button": {"payload": "ack", "text": "Got it"},
        "context": {"from": "1555", "id": f"wamid.{announcement_id}.{employee_id}"},
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"messages": [msg]}}]}],
        }
    ).encode()
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200


async def audience_of(db: Db, announcement_id: int) -> set[int]:
    async with db() as s:
        rows = await s.execute(
            text("SELECT employee_id FROM delivery WHERE announcement_id = :a"), {"a": announcement_id}
        )
        return {r[0] for r in rows}


async def remind(client: Client, tenant: Tenant, aid: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await client.post(f"/announcements/{aid}/remind", json=body or {}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def audience_count(client: Client, tenant: Tenant, aid: int) -> int:
    r = await client.get(f"/announcements/{aid}/reminder-audience", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


async def test_audience_is_the_reached_who_have_not_acknowledged_and_may_still_be_messaged(
    client: Client, db: Db, tenant: Tenant
) -> None:
    e = await employees(db, tenant.employer_id, 11)
    statuses = ["sent", "delivered", "read", "read", "failed", "unknown", "skipped", "cancelled", "sent", "delivered"]
    aid = await sent_original(db, tenant.employer_id, list(zip(e, statuses, strict=False)))
    # e[10] was never in the audience at all.
    await ack(client, db, aid, e[3])
    async with db() as s, s.begin():
        await s.execute(text("UPDATE employee SET opted_out_at = now() WHERE id = :i"), {"i": e[8]})
        await s.execute(text("UPDATE employee SET active = false WHERE id = :i"), {"i": e[9]})
    assert await audience_count(client, tenant, aid) == 3

    shown = await remind(client, tenant, aid)
    assert shown["reminder_of"] == aid
    assert shown["message"] == "Reminder: Fire drill at 14:00"
    assert shown["status"] == "scheduled"
    assert shown["remind_after"] is None
    assert await fanout.fan_out_due(db) == 1
    assert await audience_of(db, shown["id"]) == {e[0], e[1], e[2]}
    got = (await client.get(f"/announcements/{shown['id']}", headers=tenant.headers)).json()
    assert got["status"] == "dispatching"
    assert got["counts"]["pending"] == 3
    assert got["reminder_of"] == aid

    # A second fan-out of the same reminder (a worker that died after its commit, a racing one) adds nothing.
    async with db() as s, s.begin():
        await s.execute(
            query("reminder_fan_out_insert"), {"aid": shown["id"], "eid": tenant.employer_id, "original": aid}
        )
    assert await audience_of(db, shown["id"]) == {e[0], e[1], e[2]}


async def test_acknowledging_a_reminder_counts_for_the_chain_and_the_detail_reports_each_reminder(
    client: Client, db: Db, tenant: Tenant
) -> None:
    e = await employees(db, tenant.employer_id, 5)
    aid = await sent_original(db, tenant.employer_id, [(x, "delivered") for x in e[:4]] + [(e[4], "failed")])
    await ack(client, db, aid, e[0])  # 1 of 4 reached, before any reminder

    first = await remind(client, tenant, aid, {"message": "Please confirm the drill."})
    assert first["message"] == "Please confirm the drill."
    await fanout.fan_out_due(db)
    assert await audience_of(db, first["id"]) == {e[1], e[2], e[3]}
    async with db() as s, s.begin():
        await reached(s, tenant.employer_id, first["id"], [(x, "delivered") for x in (e[1], e[2], e[3])])
        await s.execute(text("UPDATE announcement SET status = 'completed', completed_at = now() WHERE id = :a"),
                        {"a": first["id"]})  # fmt: skip
    await ack(client, db, first["id"], e[1])  # acknowledged through the reminder
    assert await audience_count(client, tenant, aid) == 2
    assert await audience_count(client, tenant, first["id"]) == 2

    # A reminder of the reminder: its reached, minus whoever acknowledged anything in the chain.
    second = await remind(client, tenant, first["id"])
    assert second["message"] == "Reminder: Please confirm the drill."
    await fanout.fan_out_due(db)
    assert await audience_of(db, second["id"]) == {e[2], e[3]}
    async with db() as s, s.begin():
        await reached(s, tenant.employer_id, second["id"], [(e[2], "read"), (e[3], "failed")])
    await ack(client, db, second["id"], e[2])
    assert await audience_count(client, tenant, aid) == 1  # e[3]: reached by the original, still silent

    detail = (await client.get(f"/announcements/{aid}", headers=tenant.headers)).json()
    assert [r["id"] for r in detail["reminders"]] == [first["id"], second["id"]]
    one, two = detail["reminders"]
    assert (one["status"], one["recipients"], one["acknowledged"]) == ("completed", 3, 2)
    assert (two["status"], two["recipients"], two["acknowledged"]) == ("dispatching", 2, 1)
    # Of the 4 reached: 2 had acknowledged when the second reminder was dispatched (e[0], e[1]); 3 by now.
    assert one["acknowledgement_rate"] == 0.5
    assert two["acknowledgement_rate"] == 0.75
    # The reminder's own detail lists the reminder below it, measured against its own reached (3: e[1..3]).
    below = (await client.get(f"/announcements/{first['id']}", headers=tenant.headers)).json()["reminders"]
    assert [(r["id"], r["acknowledgement_rate"]) for r in below] == [(second["id"], 2 / 3)]


async def test_who_acknowledges_while_the_reminder_is_scheduled_is_not_reminded(
    client: Client, db: Db, tenant: Tenant
) -> None:
    e = await employees(db, tenant.employer_id, 3)
    aid = await sent_original(db, tenant.employer_id, [(x, "delivered") for x in e])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    shown = await remind(client, tenant, aid, {"send_time": later})
    assert await fanout.fan_out_due(db) == 0  # not due yet
    await ack(client, db, aid, e[1])
    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET send_at = now() WHERE id = :a"), {"a": shown["id"]})
    assert await fanout.fan_out_due(db) == 1
    assert await audience_of(db, shown["id"]) == {e[0], e[2]}


async def test_remind_refuses_what_cannot_be_reminded(
    client: Client, db: Db, tenant: Tenant, make_tenant: MakeTenant
) -> None:
    e = await employees(db, tenant.employer_id, 2)
    created = await client.post("/announcements", json={"message": "Later", "send_time": "2099-01-01T09:00:00Z"},
                                headers=tenant.headers)  # fmt: skip
    scheduled = created.json()["id"]
    r = await client.post(f"/announcements/{scheduled}/remind", json={}, headers=tenant.headers)
    assert r.status_code == 409
    assert "not been sent yet" in r.json()["detail"]

    cancelled = (await client.post("/announcements", json={"message": "Oops", "send_time": "2099-01-01T09:00:00Z"},
                                   headers=tenant.headers)).json()["id"]  # fmt: skip
    assert (await client.post(f"/announcements/{cancelled}/cancel", headers=tenant.headers)).status_code == 200
    r = await client.post(f"/announcements/{cancelled}/remind", json={}, headers=tenant.headers)
    assert r.status_code == 409
    assert "cancelled before anything was sent" in r.json()["detail"]

    # Cancelled part-way: what got out can be reminded.
    partly = await sent_original(db, tenant.employer_id, [(e[0], "sent"), (e[1], "cancelled")], status="cancelled")
    assert (await remind(client, tenant, partly))["reminder_of"] == partly

    other = await make_tenant(slug="other", name="Other")
    for path in (f"/announcements/{partly}/remind", "/announcements/999999/remind", "/announcements/0/remind"):
        r = await client.post(path, json={}, headers=other.headers)
        assert r.status_code == 404, path
    for path in (f"/announcements/{partly}/reminder-audience", "/announcements/999999/reminder-audience"):
        assert (await client.get(path, headers=other.headers)).status_code == 404
    assert await audience_count(client, tenant, scheduled) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "   "}, "message"),
        ({"message": "x", "template": {"name": "t"}}, "message"),
        ({"send_time": "2026-12-01T09:00:00"}, "send_time"),
        ({"send_time": "soon"}, "send_time"),
        ({"audience": {"all": True}}, "audience"),
        ({"message": 5}, "message"),
    ],
)
async def test_remind_validation_names_the_field(
    client: Client, db: Db, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    e = await employees(db, tenant.employer_id, 1)
    aid = await sent_original(db, tenant.employer_id, [(e[0], "sent")])
    r = await client.post(f"/announcements/{aid}/remind", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert field in [x["field"] for x in r.json()["errors"]]
    async with db() as s:
        assert (await s.execute(text("SELECT count(*) FROM announcement WHERE reminder_of IS NOT NULL"))).scalar() == 0


async def test_a_reminder_audience_cannot_be_patched(client: Client, db: Db, tenant: Tenant) -> None:
    e = await employees(db, tenant.employer_id, 1)
    aid = await sent_original(db, tenant.employer_id, [(e[0], "sent")])
    rid = (await remind(client, tenant, aid, {"send_time": "2099-01-01T09:00:00Z"}))["id"]
    r = await client.patch(f"/announcements/{rid}", json={"audience": {"all": True}}, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "audience"
    r = await client.patch(f"/announcements/{rid}", json={"message": "Do confirm"}, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["reminder_of"] == aid


async def test_remind_honours_idempotency_key(client: Client, db: Db, tenant: Tenant) -> None:
    e = await employees(db, tenant.employer_id, 1)
    aid = await sent_original(db, tenant.employer_id, [(e[0], "sent")])
    other = await sent_original(db, tenant.employer_id, [(e[0], "sent")])
    headers = {**tenant.headers, "Idempotency-Key": "remind-1"}
    first = await client.post(f"/announcements/{aid}/remind", json={"message": "Confirm"}, headers=headers)
    again = await client.post(f"/announcements/{aid}/remind", json={"message": "Confirm"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    elsewhere = await client.post(f"/announcements/{other}/remind", json={"message": "Confirm"}, headers=headers)
    assert elsewhere.status_code == 422
    assert elsewhere.json()["errors"][0]["field"] == "Idempotency-Key"
    async with db() as s:
        assert (await s.execute(text("SELECT count(*) FROM announcement WHERE reminder_of IS NOT NULL"))).scalar() == 1


@pytest.mark.parametrize("value", ["PT30M", "PT59M59S", "P15D", "P14DT1S", "garbage", "P", "PT", "P1DT", "1h", "P1W"])
async def test_remind_after_outside_the_rule_is_a_422_naming_it(client: Client, tenant: Tenant, value: str) -> None:
    r = await client.post("/announcements", json={"message": "Hi", "remind_after": value}, headers=tenant.headers)
    assert r.status_code == 422, value
    errors = r.json()["errors"]
    assert [x["field"] for x in errors] == ["remind_after"]
    assert "1 hour" in errors[0]["message"] or "ISO 8601 duration" in errors[0]["message"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("PT24H", "PT24H"), ("P1D", "PT24H"), ("PT90M", "PT1H30M"), ("P2DT3H", "PT51H"), ("PT1H", "PT1H"),
     ("P14D", "PT336H"), ("pt3600s", "PT1H")],
)  # fmt: skip
async def test_remind_after_is_stored_and_shown_normalised(
    client: Client, tenant: Tenant, value: str, shown: str
) -> None:
    r = await client.post(
        "/announcements",
        json={"message": "Hi", "remind_after": value, "send_time": "2099-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["remind_after"] == shown
    assert r.json()["reminder_of"] is None
    got = (await client.get(f"/announcements/{r.json()['id']}", headers=tenant.headers)).json()
    assert got["remind_after"] == shown


async def test_remind_after_makes_its_reminder_once_whatever_races(db: Db, tenant: Tenant) -> None:
    e = await employees(db, tenant.employer_id, 3)
    aid = await sent_original(db, tenant.employer_id, [(x, "delivered") for x in e], status="dispatching")
    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET remind_after_seconds = 7200 WHERE id = :a"), {"a": aid})

    # Completion from two workers at once, several times over (each its own connection and transaction).
    for _ in range(3):
        await asyncio.gather(completion.complete_finished(db), completion.complete_finished(db))

    # The insert itself racing (workers that both saw the completion): the unique index makes it once.
    async def insert() -> int:
        async with db() as s, s.begin():
            return len((await s.execute(query("auto_reminder_insert"), {"ids": [aid]})).all())

    assert sum(await asyncio.gather(*(insert() for _ in range(4)))) == 0
    # Reopened by a resend and completed again: still the one reminder.
    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET status = 'dispatching' WHERE id = :a"), {"a": aid})
    await completion.complete_finished(db)

    async with db() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT r.message, r.auto_reminder, r.status, r.remind_after_seconds, "
                    "r.send_at - o.completed_at AS due_after FROM announcement r "
                    "JOIN announcement o ON o.id = r.reminder_of WHERE r.reminder_of = :a"
                ),
                {"a": aid},
            )
        ).all()
    assert len(rows) == 1
    message, auto, status, own_after, due_after = rows[0]
    assert (message, auto, status, own_after) == ("Reminder: Fire drill at 14:00", True, "scheduled", None)
    # Due two hours after completion (the reopened completion moved completed_at; the reminder keeps its time).
    assert timedelta(hours=1, minutes=59) < due_after <= timedelta(hours=2)


@pytest.fixture
async def graph_stub(settings: Settings) -> AsyncIterator[tuple[GraphStub, GraphClient]]:
    stub = GraphStub()
    http = make_http_client(settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        yield stub, GraphClient.for_settings(http, settings)


async def test_remind_after_through_the_dispatcher_reaches_exactly_the_silent(
    client: Client, db: Db, tenant: Tenant, settings: Settings, graph_stub: tuple[GraphStub, GraphClient]
) -> None:
    stub, graph = graph_stub
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp())"),
            {"p": settings.whatsapp_phone_number_id},
        )
    e = await employees(db, tenant.employer_id, 4)
    created = await client.post(
        "/announcements", json={"message": "Drill", "remind_after": "PT1H"}, headers=tenant.headers
    )
    assert created.status_code == 201
    aid = created.json()["id"]
    d = Dispatcher(settings, db, graph, worker_id="w1", concurrency=10)
    await d.run_once()
    await d.drain()
    await d.run_once()
    assert (await client.get(f"/announcements/{aid}", headers=tenant.headers)).json()["status"] == "completed"
    async with db() as s, s.begin():
        # Meta's statuses, as the webhook would have applied them: e[3]'s send failed after all.
        await s.execute(text("UPDATE delivery SET wamid = 'wamid.' || announcement_id || '.' || employee_id"))
        await s.execute(text("UPDATE delivery SET status = 'failed' WHERE employee_id = :i"), {"i": e[3]})
    await ack(client, db, aid, e[0])
    async with db() as s:
        rid = (await s.execute(text("SELECT id FROM announcement WHERE reminder_of = :a"), {"a": aid})).scalar_one()
    assert await audience_count(client, tenant, aid) == 2
    before = len(stub.requests)
    await d.run_once()
    assert len(stub.requests) == before  # due an hour after completion, not now

    async with db() as s, s.begin():
        await s.execute(text("UPDATE announcement SET send_at = now() WHERE id = :r"), {"r": rid})
    await d.run_once()
    await d.drain()
    await d.run_once()
    sent = stub.requests[before:]
    assert sorted(body["to"].lstrip("+") for body in sent) == [phone(tenant.employer_id, i).lstrip("+") for i in (1, 2)]
    assert all("Reminder: Drill" in json.dumps(body) for body in sent)
    reminder = (await client.get(f"/announcements/{rid}", headers=tenant.headers)).json()
    assert (reminder["status"], reminder["counts"]["total"], reminder["counts"]["sent"]) == ("completed", 2, 2)
    assert (await client.get(f"/announcements/{aid}", headers=tenant.headers)).json()["reminders"][0]["id"] == rid
