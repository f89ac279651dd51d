"""Conversations with employees (issue 17): `GET`/`POST /employees/{id}/messages` and the inbox's filters.

Real PostgreSQL; employees write through signed webhooks; replies are sent by a real Dispatcher over the production
HTTP client with Graph mocked by respx (tests/graph_respx.py), so the requests counted are the ones WhatsApp would
receive, from the number each goes out from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.graph.client import make_http_client
from bot.settings import Settings
from bot.webhook.service import REPLIES
from tests.conftest import MakeTenant, Tenant
from tests.integration.test_dispatch_outcomes import accepted
from tests.integration.test_own_numbers import (
    OWN,
    OWN_TOKEN,
    PERSON,
    SECRET,
    SHARED,
    SHARED_TOKEN,
    bearer,
    full_budget,
    inbound,
    make_dispatcher,
    post,
    put_sender,
    sends,
    settle,
    typed,
)
from tests.integration.test_webhook_bsuid import BSUID
from tests.integration.test_webhook_bsuid import inbound as inbound_by_user_id

Db = async_sessionmaker[AsyncSession]
Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with JEM_SECRET_KEY set, so an employer can have its own number."""
    return settings.replace(secret_key=SECRET)


@pytest.fixture
async def http(graph_respx: respx.MockRouter, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(settings) as client:
        yield client


@pytest.fixture
def shared_route(graph_respx: respx.MockRouter) -> respx.Route:
    return graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))


@pytest.fixture
def own_route(graph_respx: respx.MockRouter) -> respx.Route:
    return graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))


async def employee(db: Db, tenant: Tenant, phone: str = PERSON, name: str = "Thandi") -> int:
    async with db() as s, s.begin():
        q = text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, :n) RETURNING id")
        return int((await s.execute(q, {"e": tenant.employer_id, "p": phone, "n": name})).scalar_one())


async def announcement_to(
    db: Db, tenant: Tenant, employee_id: int, message: str = "Fire drill at 14:00", wamid: str = "wamid.ANN"
) -> int:
    """An announcement sent to the employee an hour ago (its message `wamid`); returns its delivery's id."""
    async with db() as s, s.begin():
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                    "VALUES (:e, :m, now() - interval '1 hour', '{}', 'completed') RETURNING id"
                ),
                {"e": tenant.employer_id, "m": message},
            )
        ).scalar_one()
        q = text(
            "INSERT INTO delivery (employer_id, announcement_id, employee_id, status, wamid, attempts, claims, "
            "created_at, sent_at) VALUES (:e, :a, :m, 'delivered', :w, 1, 1, now() - interval '1 hour', "
            "now() - interval '59 minutes') RETURNING id"
        )
        params = {"e": tenant.employer_id, "a": ann, "m": employee_id, "w": wamid}
        return int((await s.execute(q, params)).scalar_one())


async def writes(client: Client, wamid: str, words: str, *, to: str = SHARED, phone: str = PERSON) -> None:
    await post(client, inbound(wamid, typed(words), to=to, phone=phone))


async def age_messages(db: Db, employee_id: int, hours: float) -> None:
    """The employee's messages came `hours` earlier than they did (the window is counted from the last one)."""
    async with db() as s, s.begin():
        await s.execute(
            text(
                "UPDATE inbound_message SET received_at = received_at - make_interval(secs => :s) "
                "WHERE employee_id = :m"
            ),
            {"s": hours * 3600, "m": employee_id},
        )


async def operator_replies(db: Db) -> list[tuple[Any, ...]]:
    async with db() as s:
        rows = await s.execute(
            text(
                "SELECT employee_id, body, phone_number_id, recipient_user_id FROM delivery WHERE reply_key LIKE 'op:%'"
            )
        )
        return [tuple(r) for r in rows.all()]


def path(employee_id: int) -> str:
    return f"/employees/{employee_id}/messages"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- the conversation --------------------------------------------------------------------------------------------


async def test_the_conversation_holds_their_messages_announcements_bot_and_operator_replies_in_order(
    client: Client, db: Db, tenant: Tenant, settings: Settings, http: httpx.AsyncClient, shared_route: respx.Route
) -> None:
    await full_budget(db, SHARED)
    emp = await employee(db, tenant)
    did = await announcement_to(db, tenant, emp)
    await writes(client, "wamid.Q1", "Is the drill today?")
    await writes(client, "wamid.Q2", "HELP")  # the bot answers this one itself
    created = await client.post(path(emp), json={"text": "  Yes, at 14:00.  "}, headers=tenant.headers)
    assert created.status_code == 202, created.text
    reply = created.json()
    assert reply["direction"] == "out"
    assert reply["kind"] == "reply"
    assert reply["status"] == "pending"
    assert reply["text"] == "Yes, at 14:00."  # trimmed
    assert reply["delivery_id"] == reply["id"]
    assert reply["type"] is None
    assert reply["announcement_id"] is None

    shown = await client.get(path(emp), headers=tenant.headers)
    assert shown.status_code == 200, shown.text
    page = shown.json()
    got = [(i["direction"], i["kind"], i["type"], i["text"], i["status"]) for i in page["items"]]
    assert got == [
        ("out", "announcement", None, "Fire drill at 14:00", "delivered"),
        ("in", "message", "text", "Is the drill today?", None),
        ("in", "message", "text", "HELP", None),
        ("out", "reply", None, REPLIES["help"], "pending"),
        ("out", "reply", None, "Yes, at 14:00.", "pending"),
    ]
    assert page["items"][0]["id"] == did
    assert page["items"][0]["announcement_id"] is not None
    assert page["items"][-1]["id"] == reply["id"]
    assert page["next_cursor"] is None
    assert page["window_open"] is True
    last_in = at(page["items"][2]["at"])
    assert at(page["window_closes_at"]) == last_in + timedelta(hours=24)

    # The dispatcher sends both replies once each, from the shared number the employee wrote to.
    dispatcher = make_dispatcher(settings, db, http, "conversation")
    await settle(dispatcher, db)
    await settle(dispatcher, db)  # another pass: nothing goes twice
    assert sorted((s.to, s.bearer, s.body["text"]["body"]) for s in sends(shared_route)) == sorted(
        [(PERSON, bearer(SHARED_TOKEN), REPLIES["help"]), (PERSON, bearer(SHARED_TOKEN), "Yes, at 14:00.")]
    )
    after = (await client.get(path(emp), headers=tenant.headers)).json()["items"]
    assert [i["status"] for i in after[-2:]] == ["sent", "sent"]
    # Once sent, `at` is when it was sent.
    assert at(after[-1]["at"]) >= at(reply["at"])


async def test_pages_go_back_from_the_latest_and_never_overlap(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    await announcement_to(db, tenant, emp)
    for i in range(5):
        await writes(client, f"wamid.P{i}", f"message {i}")
    assert (await client.post(path(emp), json={"text": "noted"}, headers=tenant.headers)).status_code == 202
    everything = (await client.get(path(emp), headers=tenant.headers)).json()["items"]
    assert len(everything) == 7

    pages, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        r = await client.get(path(emp), params=params, headers=tenant.headers)
        assert r.status_code == 200, r.text
        pages.append(r.json()["items"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    # The first page is the latest three, oldest first; each next one is older.
    assert [i["text"] for i in pages[0]] == ["message 3", "message 4", "noted"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in reversed(pages) for i in p] == everything

    for bad in ({"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"cursor": "not-ours"}, {"cursor": "aWQ6MQ"}):
        r = await client.get(path(emp), params=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == next(iter(bad))


async def test_another_employers_employee_is_not_found(
    client: Client, db: Db, tenant: Tenant, make_tenant: MakeTenant
) -> None:
    emp = await employee(db, tenant)
    await writes(client, "wamid.T1", "hello")
    other = await make_tenant(slug="other", name="Other Ltd")
    for who, employee_id in ((other, emp), (tenant, 999_999), (tenant, 2**70), (tenant, 0)):
        assert (await client.get(path(employee_id), headers=who.headers)).status_code == 404
        r = await client.post(path(employee_id), json={"text": "hi"}, headers=who.headers)
        assert r.status_code == 404, r.text
    assert (await client.get(path(emp))).status_code == 401
    assert (await client.post(path(emp), json={"text": "hi"})).status_code == 401
    assert await operator_replies(db) == []


# --- replying: once, from the number written to ------------------------------------------------------------------


async def test_the_same_idempotency_key_twice_sends_once(
    client: Client, db: Db, tenant: Tenant, settings: Settings, http: httpx.AsyncClient, shared_route: respx.Route
) -> None:
    await full_budget(db, SHARED)
    emp = await employee(db, tenant)
    await writes(client, "wamid.K1", "Can I swap my shift?")
    headers = tenant.headers | {"Idempotency-Key": "reply-1"}
    first = await client.post(path(emp), json={"text": "Yes"}, headers=headers)
    again = await client.post(path(emp), json={"text": "Yes"}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    # The same key with another text, or for another employee, is another request: refused, not replayed.
    other = await employee(db, tenant, phone="+27820000002", name="Sipho")
    await writes(client, "wamid.K2", "me too", phone="+27820000002")
    for url, body in ((path(emp), {"text": "No"}), (path(other), {"text": "Yes"})):
        refused = await client.post(url, json=body, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len(await operator_replies(db)) == 1

    dispatcher = make_dispatcher(settings, db, http, "idempotent")
    for _ in range(2):
        await settle(dispatcher, db)
    assert [(s.to, s.body["text"]["body"]) for s in sends(shared_route)] == [(PERSON, "Yes")]


async def test_racing_posts_with_one_key_queue_and_send_one_reply(
    client: Client, db: Db, tenant: Tenant, settings: Settings, http: httpx.AsyncClient, shared_route: respx.Route
) -> None:
    await full_budget(db, SHARED)
    emp = await employee(db, tenant)
    await writes(client, "wamid.R1", "Where is my payslip?")
    headers = tenant.headers | {"Idempotency-Key": "race-1"}
    # A second app with its own engine: the requests race on different database connections, as two API
    # processes would.
    async with AsyncTestClient(app=create_app(settings)) as second:
        answers = await asyncio.gather(
            *(c.post(path(emp), json={"text": "In your email"}, headers=headers) for c in (client, second) * 3)
        )
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {202, 409}, [a.text for a in answers]
    assert 202 in codes
    assert len({a.json()["delivery_id"] for a in answers if a.status_code == 202}) == 1
    assert all("Retry-After" in a.headers for a in answers if a.status_code == 409)
    assert len(await operator_replies(db)) == 1

    dispatcher = make_dispatcher(settings, db, http, "race")
    for _ in range(2):
        await settle(dispatcher, db)
    assert [(s.to, s.body["text"]["body"]) for s in sends(shared_route)] == [(PERSON, "In your email")]


async def test_the_reply_goes_out_from_the_own_number_the_employee_wrote_to(
    client: Client,
    db: Db,
    tenant: Tenant,
    settings: Settings,
    http: httpx.AsyncClient,
    own_route: respx.Route,
) -> None:
    await put_sender(client, tenant)
    await full_budget(db, SHARED, OWN)
    emp = await employee(db, tenant)
    await writes(client, "wamid.O1", "Is the canteen open?", to=OWN)
    r = await client.post(path(emp), json={"text": "Until 15:00"}, headers=tenant.headers)
    assert r.status_code == 202, r.text
    assert await operator_replies(db) == [(emp, "Until 15:00", OWN, None)]
    await settle(make_dispatcher(settings, db, http, "own"), db)
    assert [(s.to, s.bearer, s.body["text"]["body"]) for s in sends(own_route)] == [
        (PERSON, bearer(OWN_TOKEN), "Until 15:00")
    ]
    # Nothing else was sent (a request to the shared number would have no route and fail the send).
    async with db() as s:
        row = (await s.execute(text("SELECT phone_number_id, status FROM delivery WHERE reply_key LIKE 'op:%'"))).one()
    assert tuple(row) == (OWN, "sent")


async def test_someone_who_wrote_without_their_number_is_answered_at_their_user_id(
    client: Client, db: Db, tenant: Tenant, settings: Settings, http: httpx.AsyncClient, graph_respx: respx.MockRouter
) -> None:
    await full_budget(db, SHARED)

    def accept_by_user_id(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={"messages": [{"id": f"wamid.{body['biz_opaque_callback_data']}"}]})

    route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=accept_by_user_id)
    emp = await employee(db, tenant)
    # First with both (which proves the user id is theirs), then with the user id alone.
    await post(client, inbound_by_user_id("wamid.U1", body="Hello", phone=True))
    await post(client, inbound_by_user_id("wamid.U2", body="It's Thandi, by username"))
    assert (await client.post(path(emp), json={"text": "Hi Thandi"}, headers=tenant.headers)).status_code == 202
    assert await operator_replies(db) == [(emp, "Hi Thandi", None, BSUID)]
    await settle(make_dispatcher(settings, db, http, "bsuid"), db)
    [call] = route.calls
    sent = json.loads(call.request.content)
    assert (sent["recipient"], sent["text"]["body"]) == (BSUID, "Hi Thandi")
    assert "to" not in sent


# --- refused: outside the window, never wrote, erased, bad input -------------------------------------------------


async def test_outside_the_window_is_a_409_and_nothing_is_queued(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    await writes(client, "wamid.W1", "Hello")
    await age_messages(db, emp, 25)
    r = await client.post(path(emp), json={"text": "Sorry for the delay"}, headers=tenant.headers)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "last wrote 25 hours ago" in detail
    assert "24-hour window" in detail
    assert "template" in detail
    shown = (await client.get(path(emp), headers=tenant.headers)).json()
    assert shown["window_open"] is False
    assert at(shown["window_closes_at"]) == at(shown["items"][-1]["at"]) + timedelta(hours=24)

    await age_messages(db, emp, 24)  # now 49 hours ago
    r = await client.post(path(emp), json={"text": "Sorry"}, headers=tenant.headers | {"Idempotency-Key": "late-1"})
    assert r.status_code == 409
    assert "last wrote 2 days ago" in r.json()["detail"]
    assert await operator_replies(db) == []

    # A refused request does not keep its key: once they write again, the same request goes through.
    await writes(client, "wamid.W2", "Anyone there?")
    r = await client.post(path(emp), json={"text": "Sorry"}, headers=tenant.headers | {"Idempotency-Key": "late-1"})
    assert r.status_code == 202, r.text
    assert len(await operator_replies(db)) == 1


async def test_never_wrote_and_erased_are_409s(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    r = await client.post(path(emp), json={"text": "Hello"}, headers=tenant.headers)
    assert r.status_code == 409
    assert "never written" in r.json()["detail"]
    assert "template" in r.json()["detail"]
    shown = (await client.get(path(emp), headers=tenant.headers)).json()
    assert (shown["items"], shown["window_open"], shown["window_closes_at"]) == ([], False, None)

    await writes(client, "wamid.E1", "Please delete my data")
    async with db() as s, s.begin():
        await s.execute(text("UPDATE employee SET erased_at = now() WHERE id = :m"), {"m": emp})
    r = await client.post(path(emp), json={"text": "Done"}, headers=tenant.headers)
    assert r.status_code == 409
    assert "erased" in r.json()["detail"]
    assert await operator_replies(db) == []


async def test_an_opted_out_employee_who_writes_may_be_answered(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    await writes(client, "wamid.S1", "STOP")
    await writes(client, "wamid.S2", "But who do I ask about leave?")
    async with db() as s:
        assert (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar() is True
    r = await client.post(path(emp), json={"text": "Ask Jane in HR"}, headers=tenant.headers)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "   "}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x" * 4097}, "text"),
        ({"text": 5}, "text"),
        ({}, "text"),
        ({"text": "hi", "message": "hi"}, "message"),
    ],
    ids=["blank", "empty", "too-long", "not-a-string", "missing", "unknown-field"],
)
async def test_bad_text_is_a_422_naming_the_field(
    client: Client, db: Db, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    emp = await employee(db, tenant)
    await writes(client, "wamid.V1", "hello")
    r = await client.post(path(emp), json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert await operator_replies(db) == []


async def test_the_longest_text_and_bad_keys(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    await writes(client, "wamid.V2", "hello")
    assert (await client.post(path(emp), json={"text": "x" * 4096}, headers=tenant.headers)).status_code == 202
    for key in ("has space", "x" * 256):
        r = await client.post(path(emp), json={"text": "hi"}, headers=tenant.headers | {"Idempotency-Key": key})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    malformed = await client.post(
        path(emp), content=b"{not json", headers=tenant.headers | {"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400


# --- the inbox: ?employee_id=, ?acknowledgements=false, answered -------------------------------------------------


async def test_inbox_filters_by_employee_and_hides_acknowledgements(
    client: Client, db: Db, tenant: Tenant, make_tenant: MakeTenant
) -> None:
    emp = await employee(db, tenant)
    other = await employee(db, tenant, phone="+27820000002", name="Sipho")
    did = await announcement_to(db, tenant, emp)
    tap = {"type": "button", "button": {"payload": f"ack:{did}", "text": "Got it"}}
    await post(client, inbound("wamid.I1", tap, to=SHARED))
    quoted = typed("Got it, thanks") | {"context": {"from": "15550001111", "id": "wamid.ANN"}}
    await post(client, inbound("wamid.I2", quoted, to=SHARED))
    await writes(client, "wamid.I3", "A question")
    await writes(client, "wamid.I4", "From Sipho", phone="+27820000002")

    async def texts(**params: Any) -> list[str]:
        r = await client.get("/messages", params=params, headers=tenant.headers)
        assert r.status_code == 200, r.text
        return [m["text"] for m in r.json()["items"]]

    assert await texts() == ["From Sipho", "A question", "Got it, thanks", "Got it"]
    assert await texts(acknowledgements="true") == ["From Sipho", "A question", "Got it, thanks", "Got it"]
    assert await texts(acknowledgements="false") == ["From Sipho", "A question"]
    assert await texts(employee_id=emp) == ["A question", "Got it, thanks", "Got it"]
    assert await texts(employee_id=emp, acknowledgements="false") == ["A question"]
    assert await texts(employee_id=other) == ["From Sipho"]
    assert await texts(employee_id=emp, limit=1) == ["A question"]
    assert await texts(employee_id=999_999) == []
    # Another employer's employee: nothing, as for an unknown one.
    stranger = await make_tenant(slug="other", name="Other Ltd")
    assert (await client.get("/messages", params={"employee_id": emp}, headers=stranger.headers)).json()["items"] == []

    for bad, field in (
        ({"employee_id": "abc"}, "employee_id"),
        ({"employee_id": "0"}, "employee_id"),
        ({"employee_id": str(2**70)}, "employee_id"),
        ({"acknowledgements": "maybe"}, "acknowledgements"),
    ):
        r = await client.get("/messages", params=bad, headers=tenant.headers)
        assert r.status_code == 422, (bad, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], r.text


async def test_inbox_says_which_messages_were_answered(client: Client, db: Db, tenant: Tenant) -> None:
    emp = await employee(db, tenant)
    await employee(db, tenant, phone="+27820000002", name="Sipho")
    await writes(client, "wamid.A1", "First question")
    await writes(client, "wamid.A2", "HELP")  # the bot's own answer is not an operator's
    await writes(client, "wamid.A3", "Unanswered", phone="+27820000002")

    async def answered() -> dict[str, bool]:
        r = await client.get("/messages", headers=tenant.headers)
        return {m["text"]: m["answered"] for m in r.json()["items"]}

    assert await answered() == {"First question": False, "HELP": False, "Unanswered": False}
    assert (await client.post(path(emp), json={"text": "Answer"}, headers=tenant.headers)).status_code == 202
    await writes(client, "wamid.A4", "Follow-up")
    # Sipho's message stays unanswered: the reply was to Thandi.
    assert await answered() == {"First question": True, "HELP": True, "Unanswered": False, "Follow-up": False}
