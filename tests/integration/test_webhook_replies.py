"""Employee replies through the webhook: acknowledgements by context or by quick-reply payload, STOP/START/HELP."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatch.dispatcher import Dispatcher
from bot.graph.client import SendResult
from bot.settings import Settings
from bot.webhook.service import REPLIES
from tests.conftest import MakeTenant, Tenant
from tests.integration.test_webhook import URL, signed

PHONE = "+27820000001"


async def _employee(db: async_sessionmaker[AsyncSession], tenant: Tenant, phone: str = PHONE, name: str = "A") -> int:
    async with db() as s, s.begin():
        return int(
            (
                await s.execute(
                    text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, :n) RETURNING id"),
                    {"e": tenant.employer_id, "p": phone, "n": name},
                )
            ).scalar_one()
        )


async def _announcement_to(
    db: async_sessionmaker[AsyncSession], tenant: Tenant, employee_id: int, wamid: str | None, status: str = "delivered"
) -> int:
    """A sent announcement's delivery; returns the delivery id."""
    async with db() as s, s.begin():
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                    "VALUES (:e, 'hi', now(), '{}', 'completed') RETURNING id"
                ),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        return int(
            (
                await s.execute(
                    text(
                        "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid) "
                        "VALUES (:e, :a, :m, 'announcement', :st, :w) RETURNING id"
                    ),
                    {"e": tenant.employer_id, "a": ann, "m": employee_id, "st": status, "w": wamid},
                )
            ).scalar_one()
        )


def _body(message: dict[str, Any], phone: str = PHONE) -> bytes:
    msg = {"from": phone.lstrip("+"), "timestamp": "1760000000", **message}
    value = {"messaging_product": "whatsapp", "messages": [msg]}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    ).encode()


def _tap(wamid: str, payload: str, *, context: str | None = None, label: str = "Got it") -> dict[str, Any]:
    msg: dict[str, Any] = {"id": wamid, "type": "button", "button": {"payload": payload, "text": label}}
    if context is not None:
        msg["context"] = {"from": "15550001111", "id": context}
    return msg


def _typed(wamid: str, words: str) -> dict[str, Any]:
    return {"id": wamid, "type": "text", "text": {"body": words}}


async def _post(client: AsyncTestClient[Litestar], body: bytes) -> None:
    r = await client.post(URL, content=body, headers=signed(body))
    assert r.status_code == 200, r.text


async def _acked(db: async_sessionmaker[AsyncSession]) -> dict[int, bool]:
    async with db() as s:
        rows = await s.execute(text("SELECT id, acknowledged_at IS NOT NULL FROM delivery WHERE kind = 'announcement'"))
        return dict(rows.all())  # type: ignore[arg-type]


async def _inbox(db: async_sessionmaker[AsyncSession]) -> list[tuple[Any, ...]]:
    async with db() as s:
        rows = await s.execute(
            text("SELECT wamid, type, text, employee_id, delivery_id FROM inbound_message ORDER BY id")
        )
        return [tuple(r) for r in rows.all()]


async def _replies(db: async_sessionmaker[AsyncSession]) -> list[tuple[Any, ...]]:
    async with db() as s:
        rows = await s.execute(text("SELECT employee_id, body FROM delivery WHERE kind = 'reply' ORDER BY id"))
        return [tuple(r) for r in rows.all()]


async def test_tap_without_context_acknowledges_the_delivery_its_payload_names(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    older = await _announcement_to(db, tenant, emp, "wamid.OLD")
    newer = await _announcement_to(db, tenant, emp, "wamid.NEW")
    # Meta sometimes sends a template quick-reply tap without context; the payload we set at send time names it.
    for _ in range(3):
        await _post(client, _body(_tap("wamid.TAP1", f"ack:{older}")))
    assert await _acked(db) == {older: True, newer: False}
    assert await _inbox(db) == [("wamid.TAP1", "button", "Got it", emp, older)]


async def test_tap_acknowledges_an_unknown_delivery_whose_wamid_we_never_learned(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    # The send timed out (status unknown, no wamid); the employee's tap proves it arrived.
    emp = await _employee(db, tenant)
    did = await _announcement_to(db, tenant, emp, None, status="unknown")
    await _post(client, _body(_tap("wamid.TAP2", f"ack:{did}", context="wamid.NEVER-STORED")))
    assert await _acked(db) == {did: True}
    async with db() as s:
        assert (await s.execute(text("SELECT status FROM delivery WHERE id = :i"), {"i": did})).scalar_one() == "read"


async def test_a_payload_naming_someone_elses_delivery_acknowledges_nothing(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    mine = await _employee(db, tenant)
    theirs = await _employee(db, tenant, phone="+27820000002", name="B")
    their_delivery = await _announcement_to(db, tenant, theirs, "wamid.THEIRS")
    await _post(client, _body(_tap("wamid.TAP3", f"ack:{their_delivery}")))
    assert await _acked(db) == {their_delivery: False}
    assert await _inbox(db) == [("wamid.TAP3", "button", "Got it", mine, None)]


async def test_taps_that_match_no_delivery_are_kept_for_the_inbox(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    did = await _announcement_to(db, tenant, emp, "wamid.ANN")
    taps = [
        _tap("wamid.U1", "Got it"),  # a template without our payload: Meta echoes the label
        _tap("wamid.U2", "ack:999999"),  # a delivery that does not exist (purged, another installation)
        _tap("wamid.U3", "ack:" + "9" * 40),  # not a delivery id at all
        _tap("wamid.U4", "Got it", context="wamid.NOT-OURS"),  # a reply to a message we never sent
        {"id": "wamid.U5", "type": "interactive", "interactive": {"type": "button_reply"}},  # no reply object
    ]
    for tap in taps:
        await _post(client, _body(tap))
    assert await _acked(db) == {did: False}
    inbox = await _inbox(db)
    assert [(w, e, d) for w, _, _, e, d in inbox] == [(f"wamid.U{i}", emp, None) for i in range(1, 6)]
    page = (await client.get("/messages", headers=tenant.headers)).json()
    assert [m["text"] for m in page["items"]] == [None, "Got it", "Got it", "Got it", "Got it"]


async def test_interactive_replies_acknowledge_by_context_and_by_payload(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    by_context = await _announcement_to(db, tenant, emp, "wamid.I1")
    by_payload = await _announcement_to(db, tenant, emp, "wamid.I2")

    def choose(wamid: str, reply_id: str, context: str | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": wamid,
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": reply_id, "title": "Seen"}},
        }
        if context:
            msg["context"] = {"id": context}
        return msg

    await _post(client, _body(choose("wamid.C1", "seen", context="wamid.I1")))
    await _post(client, _body(choose("wamid.C2", f"ack:{by_payload}")))
    assert await _acked(db) == {by_context: True, by_payload: True}
    assert [r[2] for r in await _inbox(db)] == ["Seen", "Seen"]


async def test_acknowledged_once_however_many_replies_follow(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    did = await _announcement_to(db, tenant, emp, "wamid.ONCE")
    await _post(client, _body(_tap("wamid.O1", f"ack:{did}", context="wamid.ONCE")))
    async with db() as s:
        first = (await s.execute(text("SELECT acknowledged_at FROM delivery WHERE id = :i"), {"i": did})).scalar_one()
    # A second tap and a quoted text reply are new messages (kept in the inbox) but the same acknowledgement.
    await _post(client, _body(_tap("wamid.O2", f"ack:{did}")))
    await _post(client, _body({**_typed("wamid.O3", "thanks"), "context": {"id": "wamid.ONCE"}}))
    async with db() as s:
        again = (await s.execute(text("SELECT acknowledged_at FROM delivery WHERE id = :i"), {"i": did})).scalar_one()
    assert again == first
    assert [r[4] for r in await _inbox(db)] == [did, did, did]
    page = (await client.get(f"/announcements/{await _announcement_of(db, did)}", headers=tenant.headers)).json()
    assert page["counts"]["acknowledged"] == 1


async def _announcement_of(db: async_sessionmaker[AsyncSession], delivery_id: int) -> int:
    async with db() as s:
        q = text("SELECT announcement_id FROM delivery WHERE id = :i")
        return int((await s.execute(q, {"i": delivery_id})).scalar_one())


async def test_unsubscribe_help_and_other_text(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    await _post(client, _body(_typed("wamid.K1", "  Unsubscribe\n")))
    async with db() as s:
        assert (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one() is True
    await _post(client, _body(_typed("wamid.K2", "help")))
    await _post(client, _body(_typed("wamid.K3", "Is the canteen open on Friday?")))
    await _post(client, _body(_typed("wamid.K4", "please stop sending")))  # not the keyword alone: just kept
    assert await _replies(db) == [(emp, REPLIES["stop"]), (emp, REPLIES["help"])]
    async with db() as s:
        # HELP and ordinary text change nothing about the subscription.
        assert (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one() is True
    texts = [m["text"] for m in (await client.get("/messages", headers=tenant.headers)).json()["items"]]
    assert texts == ["please stop sending", "Is the canteen open on Friday?", "help", "  Unsubscribe\n"]


async def test_stop_and_start_tapped_on_buttons_count_like_typed_words(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    emp = await _employee(db, tenant)
    did = await _announcement_to(db, tenant, emp, "wamid.BTN")
    # A template may offer "Stop" as a quick-reply button; the tap is a reply to the announcement too.
    await _post(client, _body(_tap("wamid.B1", "Stop", context="wamid.BTN", label="Stop")))
    async with db() as s:
        assert (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one() is True
    assert await _acked(db) == {did: True}
    choice = {
        "id": "wamid.B2",
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": "START", "title": "Subscribe again"}},
    }
    await _post(client, _body(choice))
    async with db() as s:
        assert (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one() is False
    assert await _replies(db) == [(emp, REPLIES["stop"]), (emp, REPLIES["start"])]


async def test_stop_opts_the_phone_out_at_every_employer_with_one_confirmation(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant, make_tenant: MakeTenant
) -> None:
    other = await make_tenant(slug="second-job")
    here = await _employee(db, tenant)
    there = await _employee(db, other)
    await _announcement_to(db, tenant, here, "wamid.HERE")
    await _post(client, _body({**_typed("wamid.S1", "stop"), "context": {"id": "wamid.HERE"}}))
    async with db() as s:
        opted = dict((await s.execute(text("SELECT id, opted_out_at IS NOT NULL FROM employee"))).all())
    assert opted == {here: True, there: True}
    # One message, one answer: to the employer whose announcement was answered.
    assert await _replies(db) == [(here, REPLIES["stop"])]


class _FakeGraph:
    """Counts what would reach WhatsApp, per phone and per kind of send."""

    def __init__(self) -> None:
        self.sent: Counter[tuple[str, str]] = Counter()
        self.texts: list[tuple[str, str]] = []

    async def send_announcement(
        self, *, to: str, text: str, callback_data: str, ack_payload: str | None = None
    ) -> SendResult:
        self.sent[(to, "announcement")] += 1
        return SendResult(wamid=f"wamid.out-{callback_data}", wa_id=to.lstrip("+"), message_status=None)

    async def send_text(
        self, *, to: str, text: str, callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        self.sent[(to, "text")] += 1
        self.texts.append((to, text))
        return SendResult(wamid=f"wamid.out-{callback_data}", wa_id=to.lstrip("+"), message_status=None)

    async def send_interactive(
        self, *, to: str, interactive: dict[str, Any], callback_data: str, recipient_user_id: str | None = None
    ) -> SendResult:
        self.sent[(to, "interactive")] += 1
        return SendResult(wamid=f"wamid.out-{callback_data}", wa_id=to.lstrip("+"), message_status=None)

    async def send_template(
        self, *, to: str, name: str, language: str, components: list[dict[str, Any]], callback_data: str
    ) -> SendResult:
        self.sent[(to, "template")] += 1
        return SendResult(wamid=f"wamid.out-{callback_data}", wa_id=to.lstrip("+"), message_status=None)


async def test_after_stop_the_next_announcement_skips_the_employee_and_the_confirmation_goes_once(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant, settings: Settings
) -> None:
    quitter = await _employee(db, tenant)
    stayer = await _employee(db, tenant, phone="+27820000002", name="B")
    stop = _body(_typed("wamid.STOP1", "STOP"))
    for _ in range(3):  # Meta's redeliveries
        await _post(client, stop)
    created = await client.post("/announcements", json={"message": "Fire drill at 14:00"}, headers=tenant.headers)
    assert created.status_code == 201
    graph = _FakeGraph()
    dispatcher = Dispatcher(settings, db, graph, worker_id="replies-test")
    for _ in range(3):  # more rounds than needed: a second confirmation would have its chance to go out
        await dispatcher.run_once()
        await dispatcher.drain()
    await _post(client, stop)
    await dispatcher.run_once()
    await dispatcher.drain()
    assert graph.sent == Counter({(PHONE, "text"): 1, ("+27820000002", "announcement"): 1})
    assert graph.texts == [(PHONE, REPLIES["stop"])]
    async with db() as s:
        rows = dict(
            (
                await s.execute(
                    text(
                        "SELECT employee_id, status || ':' || coalesce(skip_reason, '') FROM delivery "
                        "WHERE announcement_id = :a"
                    ),
                    {"a": created.json()["id"]},
                )
            ).all()
        )
    assert rows == {quitter: "skipped:opted_out", stayer: "sent:"}
