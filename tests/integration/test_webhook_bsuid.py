"""WhatsApp usernames: employees known by a business-scoped user id (BSUID) as well as, or instead of, a number.

A BSUID is attached only on proof; messages that carry only `from_user_id` are matched, acknowledged, opted out,
filed in the inbox and answered through it; Meta's system messages move the mapping, keeping the history.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import GraphClient, make_http_client
from bot.logs import mask
from bot.settings import Settings
from tests.conftest import PHONE_NUMBER_ID, Tenant, tracker_for
from tests.integration.test_dispatch_outcomes import GraphStub, accepted
from tests.integration.test_webhook import URL, signed

Db = async_sessionmaker[AsyncSession]
PHONE = "+27820000001"
BSUID = "ZA.1502576394655843"
NEW_BSUID = "ZA.9988776655443322"


def envelope(value: dict[str, Any]) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID}, **value}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    ).encode()


def status(wamid: str, state: str, *, user_id: str | None = BSUID, callback: str | None = None) -> bytes:
    item: dict[str, Any] = {"id": wamid, "status": state, "timestamp": "1760000000", "recipient_id": PHONE[1:]}
    if user_id:
        item["recipient_user_id"] = user_id
    if callback:
        item["biz_opaque_callback_data"] = callback
    return envelope({"statuses": [item]})


def inbound(
    wamid: str, *, body: str | None = None, context: str | None = None, phone: bool = False, user_id: str = BSUID
) -> bytes:
    msg: dict[str, Any] = {"id": wamid, "timestamp": "1760000000", "from_user_id": user_id}
    if phone:
        msg["from"] = PHONE[1:]
    msg |= {"type": "text", "text": {"body": body or ""}}
    if context:
        msg["context"] = {"from": "1555", "id": context}
    contact = {"user_id": user_id, "profile": {"name": "A", "username": "thandi"}}
    return envelope({"contacts": [contact], "messages": [msg]})


async def post(client: AsyncTestClient[Litestar], body: bytes) -> None:
    response = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200, response.text


async def employee_with_delivery(db: Db, tenant: Tenant, wamid: str | None = "wamid.ANN") -> tuple[int, int]:
    async with db() as s, s.begin():
        emp = (
            await s.execute(
                text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, 'Thandi') RETURNING id"),
                {"e": tenant.employer_id, "p": PHONE},
            )
        ).scalar_one()
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                    "VALUES (:e, 'Fire drill', now(), '{}', 'completed') RETURNING id"
                ),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        did = (
            await s.execute(
                text(
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, status, wamid, attempts, claims) "
                    "VALUES (:e, :a, :m, 'sent', :w, 1, 1) RETURNING id"
                ),
                {"e": tenant.employer_id, "a": ann, "m": emp, "w": wamid},
            )
        ).scalar_one()
    return int(emp), int(did)


async def user_ids(db: Db) -> list[tuple[int, str, str, bool]]:
    async with db() as s:
        rows = await s.execute(
            text("SELECT employee_id, user_id, learned_from, superseded_at IS NULL FROM employee_user_id ORDER BY id")
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_a_status_of_our_own_send_teaches_the_employees_user_id(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, _ = await employee_with_delivery(db, tenant)
    await post(client, status("wamid.ANN", "delivered"))
    assert await user_ids(db) == [(emp, BSUID, "status", True)]
    shown = (await client.get(f"/employees/{emp}", headers=tenant.headers)).json()
    assert shown["bsuid_known"] is True
    assert BSUID not in json.dumps(shown)  # whether it is known, never the id itself


async def test_a_status_for_a_message_that_is_not_ours_teaches_nothing(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    """Never guessed: another app's message to the same person, or a forged tracker, proves nothing."""
    emp, did = await employee_with_delivery(db, tenant)
    await post(client, status("wamid.SOMEONE-ELSES", "delivered"))
    await post(client, status("wamid.FORGED", "delivered", callback=f"jem:{did}:00000000000000000000"))
    assert await user_ids(db) == []
    assert (await client.get(f"/employees/{emp}", headers=tenant.headers)).json()["bsuid_known"] is False


async def test_a_message_with_number_and_user_id_teaches_it_and_one_with_the_id_alone_is_then_matched(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, _ = await employee_with_delivery(db, tenant)
    await post(client, inbound("wamid.IN1", body="Hello", phone=True))
    assert await user_ids(db) == [(emp, BSUID, "message", True)]
    await post(client, inbound("wamid.IN2", body="Where do I sign?"))
    inbox = (await client.get("/messages", headers=tenant.headers)).json()["items"]
    assert [(m["text"], m["employee_id"], m["employee_name"]) for m in inbox] == [
        ("Where do I sign?", emp, "Thandi"),
        ("Hello", emp, "Thandi"),
    ]


async def test_a_message_from_an_unknown_user_id_is_kept_for_nobody(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    await employee_with_delivery(db, tenant)
    await post(client, inbound("wamid.IN3", body="Hi", user_id="ZA.0000000000000001"))
    assert (await client.get("/messages", headers=tenant.headers)).json()["items"] == []
    async with db() as s:
        stored = (await s.execute(text("SELECT employer_id, employee_id, from_phone FROM inbound_message"))).one()
    assert tuple(stored) == (None, None, None)


async def test_stop_and_an_acknowledgement_by_user_id_alone(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, did = await employee_with_delivery(db, tenant)
    await post(client, status("wamid.ANN", "read"))
    # A reply quoting the announcement acknowledges it, though the sender withheld their number.
    await post(client, inbound("wamid.ACK", body="Got it", context="wamid.ANN"))
    await post(client, inbound("wamid.STOP", body="STOP"))
    async with db() as s:
        acknowledged = (
            await s.execute(text("SELECT acknowledged_at IS NOT NULL FROM delivery WHERE id = :i"), {"i": did})
        ).scalar_one()
        opted = (
            await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee WHERE id = :i"), {"i": emp})
        ).scalar_one()
        reply = (
            await s.execute(text("SELECT employee_id, recipient_user_id, body FROM delivery WHERE kind = 'reply'"))
        ).one()
    assert acknowledged is True
    assert opted is True
    # The confirmation goes back the way they wrote: to their user id.
    assert (reply.employee_id, reply.recipient_user_id) == (emp, BSUID)
    assert "no longer receive" in reply.body


async def test_a_reply_to_someone_known_by_user_id_goes_to_that_id(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, settings: Settings
) -> None:
    await employee_with_delivery(db, tenant)
    await post(client, status("wamid.ANN", "read"))
    await post(client, inbound("wamid.HELP", body="help"))
    stub = GraphStub()

    async def answered_with_user_id(body: dict[str, Any]) -> httpx.Response:
        response = accepted({**body, "to": body.get("to") or "+0"})
        data = response.json()
        data["contacts"] = [{"input": body.get("recipient"), "user_id": body.get("recipient")}]
        return httpx.Response(200, json=data)

    stub.answer = answered_with_user_id
    async with db() as s, s.begin():
        await s.execute(
            text("INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp())"),
            {"p": settings.whatsapp_phone_number_id},
        )
    http = make_http_client(settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        d = Dispatcher(settings, db, GraphClient.for_settings(http, settings), worker_id="w1")
        await d.run_once()
        await d.drain()
    [sent] = stub.requests
    assert sent["recipient"] == BSUID
    assert "to" not in sent
    assert sent["type"] == "text"


async def test_a_send_answer_naming_the_user_id_teaches_it(db: Db, tenant: Tenant, settings: Settings) -> None:
    emp, did = await employee_with_delivery(db, tenant, wamid=None)
    async with db() as s, s.begin():
        await s.execute(
            text("UPDATE delivery SET status = 'pending', attempts = 0, claims = 0, wamid = NULL WHERE id = :i"),
            {"i": did},
        )
        await s.execute(text("UPDATE announcement SET status = 'dispatching'"))
        await s.execute(
            text("INSERT INTO send_budget (phone_number_id, tokens, refilled_at) VALUES (:p, 1e9, clock_timestamp())"),
            {"p": settings.whatsapp_phone_number_id},
        )
    stub = GraphStub()

    async def with_user_id(body: dict[str, Any]) -> httpx.Response:
        data = accepted(body).json()
        data["contacts"][0]["user_id"] = BSUID
        return httpx.Response(200, json=data)

    stub.answer = with_user_id
    http = make_http_client(settings, transport=httpx.MockTransport(stub.handle))
    async with http:
        d = Dispatcher(settings, db, GraphClient.for_settings(http, settings), worker_id="w1")
        await d.run_once()
        await d.drain()
    assert await user_ids(db) == [(emp, BSUID, "send", True)]


async def test_a_changed_user_id_moves_the_mapping_and_keeps_the_history(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, _ = await employee_with_delivery(db, tenant)
    await post(client, status("wamid.ANN", "read"))
    await post(client, inbound("wamid.STOP2", body="STOP"))
    system = {
        "id": "wamid.SYS1",
        "timestamp": "1760000001",
        "from_user_id": BSUID,
        "type": "system",
        "system": {"type": "user_changed_user_id", "user_id": NEW_BSUID, "body": "User A changed"},
    }
    await post(client, envelope({"messages": [system]}))
    assert await user_ids(db) == [(emp, BSUID, "status", False), (emp, NEW_BSUID, "system", True)]
    # Messages with the new id are theirs; the opt-out survived the change.
    await post(client, inbound("wamid.IN9", body="Still me", user_id=NEW_BSUID))
    inbox = (await client.get("/messages", headers=tenant.headers)).json()["items"]
    assert inbox[0]["employee_id"] == emp
    async with db() as s:
        opted = (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one()
        history = (await s.execute(text("SELECT kind, old_value, new_value FROM identity_change"))).one()
    assert opted is True
    assert tuple(history) == ("user_id", BSUID, NEW_BSUID)


async def test_a_changed_number_moves_the_employee_to_it_and_keeps_the_opt_out(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, _ = await employee_with_delivery(db, tenant)
    await post(client, inbound("wamid.STOP3", body="STOP", phone=True))
    system = {
        "id": "wamid.SYS2",
        "timestamp": "1760000001",
        "from": PHONE[1:],
        "from_user_id": BSUID,
        "type": "system",
        "system": {
            "type": "user_changed_number",
            "wa_id": "27829999999",
            "user_id": NEW_BSUID,
            "body": "User A changed from 27820000001 to 27829999999",
        },
    }
    await post(client, envelope({"messages": [system]}))
    shown = (await client.get(f"/employees/{emp}", headers=tenant.headers)).json()
    assert (shown["phone"], shown["opted_out"]) == ("+27829999999", True)
    assert await user_ids(db) == [(emp, BSUID, "message", False), (emp, NEW_BSUID, "system", True)]
    async with db() as s:
        kinds = [r[0] for r in (await s.execute(text("SELECT kind FROM identity_change ORDER BY id"))).all()]
    assert kinds == ["number", "user_id"]


async def test_a_status_carrying_our_tracker_for_an_unknown_send_teaches_the_user_id_too(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant
) -> None:
    emp, did = await employee_with_delivery(db, tenant, wamid=None)
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET status = 'unknown' WHERE id = :i"), {"i": did})
    await post(client, status("wamid.LATE", "sent", callback=await tracker_for(db, did)))
    assert await user_ids(db) == [(emp, BSUID, "status", True)]


def test_logs_mask_business_scoped_user_ids() -> None:
    line = mask(f"delivery 7 to {BSUID} (parent US.ENT.11815799212886844830) failed")
    assert BSUID not in line
    assert "11815799212886844830" not in line
    assert "ZA.…" in line
