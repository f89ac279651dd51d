"""Employers' own WhatsApp numbers (issue 15): `/sender`, the dispatcher sending from several numbers, webhook
routing by the number written to, `jem-bot sender set`, and start-up refusing tokens it cannot open.

Graph is mocked with respx on the production transport (tests/graph_respx.py), so the requests checked here are
the ones `GraphClient.for_number` builds for an own number: its URL and its bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.crypto import TokenBox
from bot.dispatch.dispatcher import Dispatcher
from bot.dispatch.worker import own_number_senders
from bot.graph.client import GraphClient, make_http_client
from bot.ledger import fanout
from bot.runtime import bind_probe, check_secret_key
from bot.settings import ConfigError, Settings
from bot.webhook.service import REPLIES
from tests.conftest import APP_SECRET, PHONE_NUMBER_ID, VERIFY_TOKEN, MakeTenant, Tenant
from tests.integration.test_dispatch_outcomes import accepted, graph_error
from tests.integration.test_webhook import URL, signed

Db = async_sessionmaker[AsyncSession]

SECRET = "test-secret-key-for-own-numbers-0123456789"
SHARED = PHONE_NUMBER_ID
SHARED_TOKEN = "test-graph-token"
OWN = "200000000000002"
OWN_WABA = "300000000000003"
OWN_TOKEN = "EAAGownTokenOfAcme-4f9Q"
NEW_OWN = "200000000000009"
NEW_TOKEN = "EAAGsecondTokenOfAcme-7ZxW"
PERSON = "+27820000001"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with JEM_SECRET_KEY set, so own numbers can be stored and opened."""
    return settings.replace(secret_key=SECRET)


# --- helpers --------------------------------------------------------------------------------------------------


async def put_sender(
    client: AsyncTestClient[Litestar],
    tenant: Tenant,
    *,
    pnid: str = OWN,
    token: str = OWN_TOKEN,
    rate: float = 1000.0,
) -> dict[str, Any]:
    body = {"phone_number_id": pnid, "waba_id": OWN_WABA, "access_token": token, "rate": rate}
    r = await client.put("/sender", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    shown: dict[str, Any] = r.json()
    return shown


async def employee(db: Db, tenant: Tenant, phone: str = PERSON, name: str = "Thandi") -> int:
    async with db() as s, s.begin():
        q = text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, :n) RETURNING id")
        return int((await s.execute(q, {"e": tenant.employer_id, "p": phone, "n": name})).scalar_one())


async def staff(db: Db, tenant: Tenant, prefix: str, n: int) -> list[str]:
    """``n`` employees with numbers ``+2782<prefix><i>``; returns their numbers."""
    phones = [f"+2782{prefix}{i:05d}" for i in range(n)]
    for i, p in enumerate(phones):
        await employee(db, tenant, p, f"{prefix}-{i}")
    return phones


async def announce(db: Db, tenant: Tenant, message: str = "Fire drill at 14:00") -> int:
    """An announcement to all of the tenant's employees, due now (the dispatcher fans it out)."""
    async with db() as s, s.begin():
        q = text(
            "INSERT INTO announcement (employer_id, message, send_at, audience) "
            "VALUES (:e, :m, now(), CAST('{\"all\": true}' AS jsonb)) RETURNING id"
        )
        return int((await s.execute(q, {"e": tenant.employer_id, "m": message})).scalar_one())


async def full_budget(db: Db, *numbers: str) -> None:
    """A full send bucket for each number: the first claim is not limited by a bucket that starts empty."""
    async with db() as s, s.begin():
        for number in numbers:
            await s.execute(
                text(
                    "INSERT INTO send_budget (phone_number_id, tokens, refilled_at) "
                    "VALUES (:p, 1e9, clock_timestamp()) ON CONFLICT (phone_number_id) DO UPDATE SET tokens = 1e9"
                ),
                {"p": number},
            )


async def scalar(db: Db, sql: str, **params: Any) -> Any:
    async with db() as s:
        return (await s.execute(text(sql), params)).scalar()


async def rows(db: Db, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with db() as s:
        return [tuple(r) for r in (await s.execute(text(sql), params)).all()]


@dataclass(frozen=True)
class Send:
    """One POST that reached (mocked) Graph."""

    to: str
    bearer: str
    body: dict[str, Any]


def sends(route: respx.Route) -> list[Send]:
    out = []
    for call in route.calls:
        body = json.loads(call.request.content)
        out.append(Send(body["to"], call.request.headers["authorization"], body))
    return out


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
async def http(graph_respx: respx.MockRouter, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The production HTTP client (its transport intercepted by `graph_respx`)."""
    async with make_http_client(settings) as client:
        yield client


def make_dispatcher(settings: Settings, db: Db, http: httpx.AsyncClient, name: str) -> Dispatcher:
    """A dispatcher built the way `open_dispatcher` builds one: own numbers through `own_number_senders`."""
    return Dispatcher(
        settings,
        db,
        GraphClient.for_settings(http, settings),
        worker_id=name,
        sender_factory=own_number_senders(http, settings, None),
    )


# Rows the dispatcher could send now: in flight, or pending and due on a number (resolved as the claim does: an
# announcement from its employer's own number, a reply from the own number written to, else the shared one)
# that is neither paused nor backed off.
SENDABLE = """
SELECT count(*) FROM delivery d
JOIN employee e ON e.id = d.employee_id
LEFT JOIN sender own ON own.employer_id = e.employer_id
LEFT JOIN sender wrote ON wrote.phone_number_id = d.phone_number_id
LEFT JOIN send_budget b ON b.phone_number_id = COALESCE(
  CASE WHEN d.kind = 'reply' THEN wrote.phone_number_id ELSE own.phone_number_id END, :shared)
WHERE d.status = 'sending'
   OR (d.status = 'pending' AND d.next_attempt_at <= now()
       AND NOT COALESCE(b.paused_until > now() OR b.backoff_until > now(), false))
"""


async def settle(d: Dispatcher, db: Db, deadline_s: float = 15.0) -> None:
    """Dispatcher passes until every announcement is fanned out and nothing is left that could be sent now."""
    deadline = time.monotonic() + deadline_s
    while True:
        await d.run_once()
        await d.drain()
        sendable = await scalar(db, SENDABLE, shared=SHARED)
        unfanned = await scalar(db, "SELECT count(*) FROM announcement WHERE status = 'scheduled' AND send_at <= now()")
        if sendable == 0 and unfanned == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{sendable} delivery(ies) still sendable after {deadline_s} s")
        await asyncio.sleep(0.01)


def inbound(wamid: str, message: dict[str, Any], *, to: str, phone: str = PERSON) -> bytes:
    """A webhook body: one message from ``phone`` written to our number ``to`` (`metadata.phone_number_id`)."""
    msg = {"from": phone.lstrip("+"), "id": wamid, "timestamp": "1760000000", **message}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": to},
        "contacts": [{"wa_id": phone.lstrip("+"), "profile": {"name": "Thandi"}}],
        "messages": [msg],
    }
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    ).encode()


def typed(words: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": words}}


def chose(employer_id: int, title: str) -> dict[str, Any]:
    """The answer to our question: the tapped row of the interactive list."""
    reply = {"id": f"employer:{employer_id}", "title": title}
    return {"type": "interactive", "interactive": {"type": "list_reply", "list_reply": reply}}


async def post(client: AsyncTestClient[Litestar], body: bytes) -> None:
    r = await client.post(URL, content=body, headers=signed(body))
    assert r.status_code == 200, r.text


async def inbox(client: AsyncTestClient[Litestar], tenant: Tenant) -> list[tuple[str | None, int | None]]:
    """The tenant's inbox, oldest first: (text, employee id)."""
    r = await client.get("/messages", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return [(m["text"], m["employee_id"]) for m in reversed(r.json()["items"])]


async def opted_out(db: Db) -> dict[int, bool]:
    return {int(i): bool(out) for i, out in await rows(db, "SELECT id, opted_out_at IS NOT NULL FROM employee")}


async def replies(db: Db) -> list[tuple[Any, ...]]:
    return await rows(
        db, "SELECT reply_key, employer_id, employee_id, phone_number_id FROM delivery WHERE kind = 'reply' ORDER BY id"
    )


# --- the API ----------------------------------------------------------------------------------------------------


async def test_put_get_delete_round_trip_shows_the_number_but_never_the_token(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    default = await client.get("/sender", headers=tenant.headers)
    bodies.append(default.text)
    assert default.status_code == 200
    shared_view = {"own": False, "phone_number_id": SHARED, "rate": 1000.0, "access_token_hint": "…oken"}
    assert {k: default.json()[k] for k in shared_view} == shared_view

    put = await client.put(
        "/sender",
        json={"phone_number_id": OWN, "waba_id": OWN_WABA, "access_token": OWN_TOKEN, "rate": 25},
        headers=tenant.headers,
    )
    bodies.append(put.text)
    assert put.status_code == 200, put.text
    own_view = {
        "own": True,
        "phone_number_id": OWN,
        "waba_id": OWN_WABA,
        "rate": 25.0,
        "access_token_hint": "…" + OWN_TOKEN[-4:],
        "paused_until": None,
        "pause_reason": None,
        "backoff_until": None,
        "backoff_reason": None,
    }
    assert put.json() == own_view
    got = await client.get("/sender", headers=tenant.headers)
    bodies.append(got.text)
    assert got.json() == own_view

    # Stored sealed: not the token's bytes, and only JEM_SECRET_KEY opens it.
    sealed = bytes(await scalar(db, "SELECT access_token FROM sender WHERE employer_id = :e", e=tenant.employer_id))
    assert OWN_TOKEN.encode() not in sealed
    assert TokenBox(SECRET).open(sealed) == OWN_TOKEN

    # A second PUT replaces the number's token (and the hint that tells tokens apart).
    again = await put_sender(client, tenant, token=NEW_TOKEN, rate=30)
    bodies.append(json.dumps(again))
    assert (again["access_token_hint"], again["rate"]) == ("…" + NEW_TOKEN[-4:], 30.0)
    sealed = bytes(await scalar(db, "SELECT access_token FROM sender WHERE employer_id = :e", e=tenant.employer_id))
    assert TokenBox(SECRET).open(sealed) == NEW_TOKEN

    deleted = await client.delete("/sender", headers=tenant.headers)
    bodies.append(deleted.text)
    assert deleted.status_code == 200
    assert {k: deleted.json()[k] for k in shared_view} == shared_view
    after = await client.get("/sender", headers=tenant.headers)
    bodies.append(after.text)
    assert {k: after.json()[k] for k in shared_view} == shared_view
    assert await scalar(db, "SELECT count(*) FROM sender") == 0

    for secret in (OWN_TOKEN, NEW_TOKEN):
        assert not [b for b in bodies if secret in b]
        assert secret not in caplog.text
        assert not [r for r in caplog.records if secret in repr(r.args)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"phone_number_id": "12ab34567"}, "phone_number_id"),
        ({"phone_number_id": SHARED}, "phone_number_id"),
        ({"waba_id": ""}, "waba_id"),
        ({"waba_id": "waba-300"}, "waba_id"),
        ({"access_token": "short"}, "access_token"),
        ({"access_token": "EAAG token with spaces"}, "access_token"),
        ({"access_token": "EAAG" + "x" * 2045}, "access_token"),
        ({"rate": 0}, "rate"),
        ({"rate": 1000.5}, "rate"),
        ({"rate": "fast"}, "rate"),
        ({"access_token": None}, "access_token"),
        ({"token": OWN_TOKEN}, "token"),
    ],
    ids=[
        "pnid-not-digits",
        "pnid-is-the-shared-number",
        "waba-empty",
        "waba-not-digits",
        "token-short",
        "token-spaces",
        "token-too-long",
        "rate-zero",
        "rate-too-high",
        "rate-not-a-number",
        "token-missing",
        "unknown-field",
    ],
)
async def test_invalid_sender_is_refused_naming_the_field_and_stores_nothing(
    client: AsyncTestClient[Litestar],
    db: Db,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, Any],
    field: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    body: dict[str, Any] = {"phone_number_id": OWN, "waba_id": OWN_WABA, "access_token": OWN_TOKEN, "rate": 10}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = await client.put("/sender", json=body, headers=tenant.headers)
    assert r.status_code in (400, 422), r.text
    problem = r.json()
    assert field in [e["field"] for e in problem.get("errors") or []] or field in problem["detail"], problem
    # Not echoed back, nor logged, whatever was wrong with the request.
    token = body.get("access_token") or body.get("token")
    if token and len(token) >= 10:
        assert token not in r.text
        assert token not in caplog.text
    assert await scalar(db, "SELECT count(*) FROM sender") == 0
    assert (await client.get("/sender", headers=tenant.headers)).json()["own"] is False


async def test_another_employers_number_is_a_conflict(
    client: AsyncTestClient[Litestar], db: Db, tenant: Tenant, make_tenant: MakeTenant
) -> None:
    other = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, tenant)
    r = await client.put(
        "/sender",
        json={"phone_number_id": OWN, "waba_id": "300000000000777", "access_token": NEW_TOKEN, "rate": 10},
        headers=other.headers,
    )
    assert r.status_code == 409, r.text
    assert NEW_TOKEN not in r.text
    assert (await client.get("/sender", headers=other.headers)).json()["own"] is False
    mine = (await client.get("/sender", headers=tenant.headers)).json()
    assert (mine["phone_number_id"], mine["access_token_hint"]) == (OWN, "…" + OWN_TOKEN[-4:])
    assert await rows(db, "SELECT employer_id, phone_number_id FROM sender") == [(tenant.employer_id, OWN)]
    # The refused PUT left the other employer able to take a number of its own.
    await put_sender(client, other, pnid=NEW_OWN, token=NEW_TOKEN)
    assert await scalar(db, "SELECT count(*) FROM sender") == 2


async def test_without_a_secret_key_own_numbers_are_a_conflict(
    settings: Settings, db: Db, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keyless = create_app(settings.replace(secret_key=""))
    async with AsyncTestClient(app=keyless) as client:
        body = {"phone_number_id": OWN, "waba_id": OWN_WABA, "access_token": OWN_TOKEN, "rate": 10}
        r = await client.put("/sender", json=body, headers=tenant.headers)
        assert r.status_code == 409, r.text
        assert "JEM_SECRET_KEY" in r.json()["detail"]
        assert OWN_TOKEN not in r.text
        assert (await client.get("/sender", headers=tenant.headers)).json()["own"] is False
    assert await scalar(db, "SELECT count(*) FROM sender") == 0
    assert OWN_TOKEN not in caplog.text


# --- the dispatcher ---------------------------------------------------------------------------------------------


async def test_each_employers_announcements_go_out_from_its_own_number_with_its_own_token(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    make_tenant: MakeTenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own)
    own_phones = await staff(db, own, "1", 3)
    shared_phones = await staff(db, shared, "2", 3)
    await announce(db, own, "Acme: fire drill")
    await announce(db, shared, "Beta: canteen closed")
    await full_budget(db, SHARED, OWN)
    own_route = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))

    await settle(make_dispatcher(settings, db, http, "two-numbers"), db)

    from_own, from_shared = sends(own_route), sends(shared_route)
    assert sorted(s.to for s in from_own) == own_phones
    assert {s.bearer for s in from_own} == {bearer(OWN_TOKEN)}
    assert {s.body["text"]["body"] for s in from_own} == {"Acme: fire drill"}
    assert sorted(s.to for s in from_shared) == shared_phones
    assert {s.bearer for s in from_shared} == {bearer(SHARED_TOKEN)}
    assert {s.body["text"]["body"] for s in from_shared} == {"Beta: canteen closed"}
    # Each delivery records the number it went out from.
    recorded = await rows(db, "SELECT employer_id, phone_number_id, status FROM delivery")
    assert Counter(recorded) == Counter({(own.employer_id, OWN, "sent"): 3, (shared.employer_id, SHARED, "sent"): 3})


async def test_replies_go_out_from_the_number_the_employee_wrote_to(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    make_tenant: MakeTenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own)
    at_own = await employee(db, own)
    at_shared = await employee(db, shared)  # the same person works for both
    await full_budget(db, SHARED, OWN)
    own_route = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))

    await post(client, inbound("wamid.HELP-OWN", typed("help"), to=OWN))
    await post(client, inbound("wamid.HELP-SHARED", typed("help"), to=SHARED))
    assert await replies(db) == [
        ("help:wamid.HELP-OWN", own.employer_id, at_own, OWN),
        ("help:wamid.HELP-SHARED", shared.employer_id, at_shared, None),
    ]
    await settle(make_dispatcher(settings, db, http, "replies"), db)

    assert [(s.to, s.bearer, s.body["type"], s.body["text"]["body"]) for s in sends(own_route)] == [
        (PERSON, bearer(OWN_TOKEN), "text", REPLIES["help"])
    ]
    assert [(s.to, s.bearer, s.body["text"]["body"]) for s in sends(shared_route)] == [
        (PERSON, bearer(SHARED_TOKEN), REPLIES["help"])
    ]
    assert Counter(await rows(db, "SELECT employer_id, phone_number_id, status FROM delivery")) == Counter(
        {(own.employer_id, OWN, "sent"): 1, (shared.employer_id, SHARED, "sent"): 1}
    )


async def test_replies_to_a_number_that_is_no_longer_own_go_out_from_the_shared_number(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    tenant: Tenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    """A reply goes out from the number written to while that is still an own number, else from the shared one:
    never from whatever number the employer has moved to since."""
    at_acme = await employee(db, tenant)
    await full_budget(db, SHARED, OWN, NEW_OWN)
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    await post(client, inbound("wamid.HELP-BEFORE", typed("help"), to=SHARED))  # before Acme had its own number
    await put_sender(client, tenant)
    await post(client, inbound("wamid.HELP-OWN", typed("help"), to=OWN))
    assert (await replies(db))[-1] == ("help:wamid.HELP-OWN", tenant.employer_id, at_acme, OWN)
    await put_sender(client, tenant, pnid=NEW_OWN, token=NEW_TOKEN)  # Acme moves to another number
    # What waits is routed again at once: OWN is no longer Acme's, so the shared number (NULL) answers.
    assert await replies(db) == [
        ("help:wamid.HELP-BEFORE", tenant.employer_id, at_acme, None),
        ("help:wamid.HELP-OWN", tenant.employer_id, at_acme, None),
    ]

    await settle(make_dispatcher(settings, db, http, "moved"), db)

    assert [(s.to, s.bearer, s.body["text"]["body"]) for s in sends(shared_route)] == [
        (PERSON, bearer(SHARED_TOKEN), REPLIES["help"])
    ] * 2
    assert await rows(db, "SELECT phone_number_id, status FROM delivery") == [(SHARED, "sent")] * 2

    # Given up altogether (DELETE): the same.
    await post(client, inbound("wamid.HELP-NEW", typed("help"), to=NEW_OWN))
    assert (await client.delete("/sender", headers=tenant.headers)).status_code == 200
    await settle(make_dispatcher(settings, db, http, "given-up"), db)
    assert len(sends(shared_route)) == 3
    assert await rows(db, "SELECT phone_number_id, status FROM delivery") == [(SHARED, "sent")] * 3


async def test_each_number_has_its_own_rate(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    make_tenant: MakeTenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own, rate=1)  # a bucket of one message
    await staff(db, own, "1", 3)
    await staff(db, shared, "2", 3)
    await announce(db, own)
    await announce(db, shared)
    await full_budget(db, SHARED, OWN)
    own_route = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    d = make_dispatcher(settings, db, http, "rates")

    await d.run_once()
    await d.drain()
    assert (len(sends(own_route)), len(sends(shared_route))) == (1, 3)

    await put_sender(client, own, rate=1000)  # the new rate is the route's at the next pass
    await settle(d, db)
    assert (len(sends(own_route)), len(sends(shared_route))) == (3, 3)


async def test_a_changed_sender_takes_the_rows_not_yet_sent(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    tenant: Tenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    settings = settings.replace(dispatcher_batch_size=2)  # one claim takes two rows
    await put_sender(client, tenant)
    await staff(db, tenant, "1", 4)
    await announce(db, tenant)
    await full_budget(db, SHARED, OWN, NEW_OWN)
    old_route = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    new_route = graph_respx.post(f"/{NEW_OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    d = make_dispatcher(settings, db, http, "changing")

    await d.run_once()  # fan-out and the first claim: two rows from the old number
    await d.drain()
    assert [s.bearer for s in sends(old_route)] == [bearer(OWN_TOKEN)] * 2
    assert Counter(await rows(db, "SELECT status, phone_number_id FROM delivery")) == Counter(
        {("sent", OWN): 2, ("pending", OWN): 2}  # waiting rows carry the number they will go out from
    )

    await put_sender(client, tenant, pnid=NEW_OWN, token=NEW_TOKEN)
    await settle(d, db)

    assert len(sends(old_route)) == 2  # nothing more from the number the employer left
    assert [s.bearer for s in sends(new_route)] == [bearer(NEW_TOKEN)] * 2
    assert Counter(await rows(db, "SELECT status, phone_number_id FROM delivery")) == Counter(
        {("sent", OWN): 2, ("sent", NEW_OWN): 2}
    )


async def test_rows_waiting_on_a_stale_number_go_out_from_the_current_one(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    tenant: Tenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    """Waiting rows carry their number; if one is stale (a sender change that raced a retry), the claim moves a
    row waiting on another live number, and housekeeping one waiting on a number no dispatcher sends from."""
    await put_sender(client, tenant)
    await staff(db, tenant, "1", 4)
    await announce(db, tenant)
    await full_budget(db, SHARED, OWN)
    own_route = graph_respx.post(f"/{OWN}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    await fanout.fan_out_due(db)
    ids = [i for (i,) in await rows(db, "SELECT id FROM delivery ORDER BY id")]
    assert await rows(db, "SELECT DISTINCT phone_number_id FROM delivery") == [(OWN,)]
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET phone_number_id = NULL WHERE id = ANY(:ids)"), {"ids": ids[:2]})
        await s.execute(text("UPDATE delivery SET phone_number_id = '299999999999999' WHERE id = ANY(:ids)"),
                        {"ids": ids[2:]})  # fmt: skip

    await settle(make_dispatcher(settings, db, http, "stale"), db)

    assert [s.bearer for s in sends(own_route)] == [bearer(OWN_TOKEN)] * 4  # none from the shared number
    assert await rows(db, "SELECT status, phone_number_id FROM delivery") == [("sent", OWN)] * 4


async def test_an_expired_token_pauses_only_its_own_number_until_a_new_token_is_put(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    make_tenant: MakeTenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own)
    await staff(db, own, "1", 3)
    shared_phones = await staff(db, shared, "2", 3)
    await announce(db, own)
    await announce(db, shared)
    await full_budget(db, SHARED, OWN)
    expired = graph_error(401, 190, "Error validating access token: Session has expired")
    own_route = graph_respx.post(f"/{OWN}/messages").mock(return_value=expired)
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))
    d = make_dispatcher(settings, db, http, "paused")

    await settle(d, db)

    # The other number went on sending; the expired one's rows wait, no attempt spent.
    assert sorted(s.to for s in sends(shared_route)) == shared_phones
    assert 1 <= len(sends(own_route)) <= 3
    waiting = await rows(
        db,
        "SELECT status, attempts, error_code FROM delivery WHERE employer_id = :e",
        e=own.employer_id,
    )
    assert waiting == [("pending", 0, 190)] * 3
    assert await rows(db, "SELECT DISTINCT status FROM delivery WHERE employer_id = :e", e=shared.employer_id) == [
        ("sent",)
    ]
    paused = await rows(
        db, "SELECT phone_number_id, paused_until > now(), pause_reason IS NOT NULL FROM send_budget ORDER BY 1"
    )
    assert paused == [(SHARED, None, False), (OWN, True, True)]
    own_view = (await client.get("/sender", headers=own.headers)).json()
    assert own_view["paused_until"] is not None
    assert own_view["pause_reason"]
    shared_view = (await client.get("/sender", headers=shared.headers)).json()
    assert (shared_view["own"], shared_view["paused_until"]) == (False, None)

    # A new token ends the pause; the waiting rows go out with it.
    own_route.mock(side_effect=lambda r: accepted(json.loads(r.content)))
    shown = await put_sender(client, own, token=NEW_TOKEN)
    assert (shown["paused_until"], shown["pause_reason"]) == (None, None)
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET next_attempt_at = now() WHERE status = 'pending'"))
    before = len(sends(own_route))
    await settle(d, db)
    resent = sends(own_route)[before:]
    assert len(resent) == 3
    assert {x.bearer for x in resent} == {bearer(NEW_TOKEN)}
    query_done = "SELECT DISTINCT status, phone_number_id FROM delivery WHERE employer_id = :e"
    done = await rows(db, query_done, e=own.employer_id)
    assert done == [("sent", OWN)]
    for secret in (OWN_TOKEN, NEW_TOKEN):
        assert secret not in caplog.text


async def test_the_question_goes_out_as_an_interactive_list_from_the_shared_number(
    client: AsyncTestClient[Litestar],
    db: Db,
    settings: Settings,
    make_tenant: MakeTenant,
    graph_respx: respx.MockRouter,
    http: httpx.AsyncClient,
) -> None:
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    await employee(db, beta)
    await employee(db, cargo)
    await full_budget(db, SHARED)
    shared_route = graph_respx.post(f"/{SHARED}/messages").mock(side_effect=lambda r: accepted(json.loads(r.content)))

    await post(client, inbound("wamid.Q1", typed("Can I swap my shift?"), to=SHARED))
    stored = await scalar(db, "SELECT payload FROM delivery WHERE reply_key = 'choose:wamid.Q1'")
    await settle(make_dispatcher(settings, db, http, "question"), db)

    [asked] = sends(shared_route)
    assert (asked.to, asked.bearer, asked.body["type"]) == (PERSON, bearer(SHARED_TOKEN), "interactive")
    assert asked.body["interactive"] == stored
    listed = asked.body["interactive"]["action"]["sections"][0]["rows"]
    assert listed == [
        {"id": f"employer:{beta.employer_id}", "title": "Beta Foods"},
        {"id": f"employer:{cargo.employer_id}", "title": "Cargo Co"},
    ]
    assert "text" not in asked.body


# --- webhook routing --------------------------------------------------------------------------------------------


async def test_a_message_to_an_own_number_belongs_to_that_employer_alone(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    shared = await make_tenant(slug="beta", name="Beta Foods")
    await put_sender(client, own)
    at_own = await employee(db, own)
    at_shared = await employee(db, shared)  # the same phone, employed at both

    await post(client, inbound("wamid.M1", typed("Is the canteen open?"), to=OWN))
    assert await inbox(client, own) == [("Is the canteen open?", at_own)]
    assert await inbox(client, shared) == []

    # The shared number serves only employers without a number of their own: this one is Beta's.
    await post(client, inbound("wamid.M2", typed("Where do I park?"), to=SHARED))
    assert await inbox(client, shared) == [("Where do I park?", at_shared)]
    assert await inbox(client, own) == [("Is the canteen open?", at_own)]
    assert await rows(db, "SELECT wamid, phone_number_id, held FROM inbound_message ORDER BY id") == [
        ("wamid.M1", OWN, False),
        ("wamid.M2", SHARED, False),
    ]

    # Someone who is nobody's employee: on the own number still that employer's message; on the shared, nobody's.
    stranger = "+27829990000"
    await post(client, inbound("wamid.M3", typed("I start Monday"), to=OWN, phone=stranger))
    await post(client, inbound("wamid.M4", typed("Hello?"), to=SHARED, phone=stranger))
    assert (await inbox(client, own))[-1] == ("I start Monday", None)
    assert "Hello?" not in [text for text, _ in await inbox(client, shared) + await inbox(client, own)]


async def test_stop_on_an_own_number_opts_out_only_there(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    await put_sender(client, own)
    at_own, at_beta, at_cargo = await employee(db, own), await employee(db, beta), await employee(db, cargo)

    await post(client, inbound("wamid.STOP-OWN", typed("STOP"), to=OWN))
    assert await opted_out(db) == {at_own: True, at_beta: False, at_cargo: False}
    # Confirmed once, from the number written to.
    assert await replies(db) == [("stop:wamid.STOP-OWN", own.employer_id, at_own, OWN)]

    await post(client, inbound("wamid.START-OWN", typed("start"), to=OWN))
    assert await opted_out(db) == {at_own: False, at_beta: False, at_cargo: False}
    assert (await replies(db))[-1] == ("start:wamid.START-OWN", own.employer_id, at_own, OWN)


async def test_stop_on_the_shared_number_opts_out_every_shared_employer_but_not_an_own_numbers(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    await put_sender(client, own)
    at_own, at_beta, at_cargo = await employee(db, own), await employee(db, beta), await employee(db, cargo)
    await employee(db, beta, phone="+27820000099", name="Someone else")

    await post(client, inbound("wamid.STOP-SHARED", typed("Stop"), to=SHARED))
    everyone = await opted_out(db)
    assert {k: everyone[k] for k in (at_own, at_beta, at_cargo)} == {at_own: False, at_beta: True, at_cargo: True}
    assert sum(everyone.values()) == 2  # nobody else
    [(key, employer_id, employee_id, pnid)] = await replies(db)
    assert (key, pnid) == ("stop:wamid.STOP-SHARED", None)
    assert (employer_id, employee_id) in {(beta.employer_id, at_beta), (cargo.employer_id, at_cargo)}
    # A keyword is acted on, never held.
    assert await scalar(db, "SELECT count(*) FROM inbound_message WHERE held") == 0


async def test_stop_on_the_shared_number_also_opts_out_a_deactivated_record_there(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    """Reactivating the employee (POST /employees with the phone) must not resume sending to someone who said STOP
    on this very number; START likewise applies to every record there."""
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    at_beta, left_cargo = await employee(db, beta), await employee(db, cargo)
    async with db() as s, s.begin():
        await s.execute(text("UPDATE employee SET active = false WHERE id = :i"), {"i": left_cargo})

    await post(client, inbound("wamid.STOP-INACTIVE", typed("STOP"), to=SHARED))
    assert await opted_out(db) == {at_beta: True, left_cargo: True}
    rehired = await client.post("/employees", json={"phone": PERSON, "name": "Thandi"}, headers=cargo.headers)
    assert rehired.status_code == 200, rehired.text
    assert (rehired.json()["active"], rehired.json()["opted_out"]) == (True, True)

    await post(client, inbound("wamid.START-ALL", typed("START"), to=SHARED))
    assert await opted_out(db) == {at_beta: False, left_cargo: False}


async def test_an_ambiguous_message_is_held_asked_about_once_and_filed_with_the_employer_chosen(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    own = await make_tenant(slug="acme", name="Acme Ltd")
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    await put_sender(client, own)
    await employee(db, own)  # not on the shared number: never offered
    await employee(db, beta)
    at_cargo = await employee(db, cargo)
    everyone = (own, beta, cargo)

    await post(client, inbound("wamid.H1", typed("Can I swap my shift?"), to=SHARED))
    await post(client, inbound("wamid.H2", typed("Anyone there?"), to=SHARED))
    assert await rows(db, "SELECT wamid, held, employer_id FROM inbound_message ORDER BY id") == [
        ("wamid.H1", True, None),
        ("wamid.H2", True, None),
    ]
    for t in everyone:
        assert await inbox(client, t) == []
    # One question, however many messages wait for the answer.
    [(key, payload, pnid)] = await rows(db, "SELECT reply_key, payload, phone_number_id FROM delivery")
    assert (key, pnid) == ("choose:wamid.H1", None)
    assert payload["type"] == "list"
    assert [(r["id"], r["title"]) for r in payload["action"]["sections"][0]["rows"]] == [
        (f"employer:{beta.employer_id}", "Beta Foods"),
        (f"employer:{cargo.employer_id}", "Cargo Co"),
    ]

    await post(client, inbound("wamid.H3", chose(cargo.employer_id, "Cargo Co"), to=SHARED))
    assert await inbox(client, cargo) == [("Can I swap my shift?", at_cargo), ("Anyone there?", at_cargo)]
    assert await inbox(client, beta) == []
    assert await inbox(client, own) == []
    choice = "SELECT employer_id, phone_number_id, expires_at > now() + interval '23 hours' FROM employer_choice"
    assert await rows(db, choice) == [(cargo.employer_id, SHARED, True)]
    assert [r[0] for r in await replies(db)] == ["choose:wamid.H1", "chose:wamid.H3"]

    # Within the 24 hours, straight to the chosen employer: no question.
    await post(client, inbound("wamid.H4", typed("Thanks!"), to=SHARED))
    assert (await inbox(client, cargo))[-1] == ("Thanks!", at_cargo)
    assert await scalar(db, "SELECT count(*) FROM inbound_message WHERE held") == 0
    assert [r[0] for r in await replies(db)] == ["choose:wamid.H1", "chose:wamid.H3"]

    # Once the choice has lapsed, the next message is held and asked about again.
    async with db() as s, s.begin():
        await s.execute(text("UPDATE employer_choice SET expires_at = now() - interval '1 second'"))
    await post(client, inbound("wamid.H5", typed("Another question"), to=SHARED))
    assert await rows(db, "SELECT wamid FROM inbound_message WHERE held") == [("wamid.H5",)]
    assert [r[0] for r in await replies(db)] == ["choose:wamid.H1", "chose:wamid.H3", "choose:wamid.H5"]


async def test_a_message_quoting_an_announcement_goes_to_its_employer_and_is_never_held(
    client: AsyncTestClient[Litestar], db: Db, make_tenant: MakeTenant
) -> None:
    beta = await make_tenant(slug="beta", name="Beta Foods")
    cargo = await make_tenant(slug="cargo", name="Cargo Co")
    await employee(db, beta)
    at_cargo = await employee(db, cargo)
    async with db() as s, s.begin():
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                    "VALUES (:e, 'Payday moved', now(), '{}', 'completed') RETURNING id"
                ),
                {"e": cargo.employer_id},
            )
        ).scalar_one()
        await s.execute(
            text(
                "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid, "
                "phone_number_id) VALUES (:e, :a, :m, 'announcement', 'delivered', 'wamid.PAYDAY', :p)"
            ),
            {"e": cargo.employer_id, "a": ann, "m": at_cargo, "p": SHARED},
        )

    quoting = {**typed("To which date?"), "context": {"from": "15550001111", "id": "wamid.PAYDAY"}}
    await post(client, inbound("wamid.Q1", quoting, to=SHARED))
    assert await inbox(client, cargo) == [("To which date?", at_cargo)]
    assert await inbox(client, beta) == []
    assert await rows(db, "SELECT held, announcement_id FROM inbound_message") == [(False, ann)]
    assert await scalar(db, "SELECT acknowledged_at IS NOT NULL FROM delivery WHERE wamid = 'wamid.PAYDAY'") is True
    assert await replies(db) == []  # nothing to ask


# --- the command line and start-up ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli_env(database_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "JEM_", "DATABASE_URL"))}
    env |= {
        "DATABASE_URL": database_url,
        "JEM_DATA_DIR": str(tmp / "jem-data"),
        "WHATSAPP_ACCESS_TOKEN": SHARED_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": SHARED,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
    }
    return env | extra


async def jem(env: dict[str, str], *args: str, stdin: str = "") -> Ran:
    """`python -m bot ARGS` as a real process, ``stdin`` on its standard input (killed after a minute)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate(stdin.encode())
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def one_line_error(ran: Ran, status: int) -> str:
    assert ran.returncode == status, ran
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert re.match(r"jem-bot( [a-z]+)*: error: ", lines[0]), lines[0]
    assert ran.stdout == ""
    return lines[0]


SET = ("sender", "set", "--employer", "acme", "--phone-number-id", OWN, "--waba-id", OWN_WABA)
LETTERS_ID = ("sender", "set", "--employer", "acme", "--phone-number-id", "abc", "--waba-id", OWN_WABA)
SHARED_ID = ("sender", "set", "--employer", "acme", "--phone-number-id", SHARED, "--waba-id", OWN_WABA)
NO_EMPLOYER = ("sender", "set", "--employer", "nobody", "--phone-number-id", OWN, "--waba-id", OWN_WABA)


async def test_sender_set_reads_the_token_from_stdin_and_stores_it_sealed(
    db: Db, tenant: Tenant, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(database_url, tmp_path, JEM_SECRET_KEY=SECRET)
    ran = await jem(env, *SET, "--rate", "50", stdin=OWN_TOKEN + "\n")
    assert ran.returncode == 0, ran
    assert ran.stdout.strip() == f"acme sends from {OWN} at 50 msg/s (token …{OWN_TOKEN[-4:]})"
    assert OWN_TOKEN not in ran.stdout + ran.stderr
    [(employer_id, pnid, waba, rate, sealed)] = await rows(
        db, "SELECT employer_id, phone_number_id, waba_id, rate, access_token FROM sender"
    )
    assert (employer_id, pnid, waba, rate) == (tenant.employer_id, OWN, OWN_WABA, 50.0)
    assert OWN_TOKEN.encode() not in bytes(sealed)
    assert TokenBox(SECRET).open(bytes(sealed)) == OWN_TOKEN


@pytest.mark.parametrize(
    ("args", "stdin", "secret", "needle"),
    [
        (SET, "", SECRET, "standard input"),
        (LETTERS_ID, OWN_TOKEN, SECRET, "phone_number_id"),
        (SHARED_ID, OWN_TOKEN, SECRET, "phone_number_id"),
        ((*SET, "--rate", "5000"), OWN_TOKEN, SECRET, "rate"),
        (SET, "short", SECRET, "access_token"),
        (NO_EMPLOYER, OWN_TOKEN, SECRET, "nobody"),
        (SET, OWN_TOKEN, "", "JEM_SECRET_KEY"),
        (SET[:-2], OWN_TOKEN, SECRET, "--waba-id"),
    ],
    ids=["no-token", "pnid-letters", "shared-pnid", "rate", "token-short", "no-employer", "no-secret", "no-waba"],
)
async def test_sender_set_bad_input_is_one_line_and_exit_2(
    db: Db,
    tenant: Tenant,
    database_url: str,
    tmp_path: Path,
    args: tuple[str, ...],
    stdin: str,
    secret: str,
    needle: str,
) -> None:
    env = cli_env(database_url, tmp_path, **({"JEM_SECRET_KEY": secret} if secret else {}))
    ran = await jem(env, *args, stdin=stdin + "\n" if stdin else "")
    line = one_line_error(ran, 2)
    assert needle in line
    assert OWN_TOKEN not in ran.stderr
    assert await scalar(db, "SELECT count(*) FROM sender") == 0


async def test_startup_refuses_stored_tokens_it_cannot_open(
    client: AsyncTestClient[Litestar],
    db: Db,
    engine: AsyncEngine,
    settings: Settings,
    tenant: Tenant,
    database_url: str,
    tmp_path: Path,
) -> None:
    keyless = settings.replace(secret_key="")
    await check_secret_key(engine, keyless)  # no own number yet: no key needed
    await put_sender(client, tenant)
    await check_secret_key(engine, settings)  # the key the token was sealed with
    with pytest.raises(ConfigError, match="JEM_SECRET_KEY"):
        await check_secret_key(engine, keyless)
    with pytest.raises(ConfigError, match="JEM_SECRET_KEY"):
        await check_secret_key(engine, settings.replace(secret_key="another-secret-key-of-enough-length-42"))

    line = one_line_error(await jem(cli_env(database_url, tmp_path), "worker"), 2)
    assert "JEM_SECRET_KEY" in line
    wrong = cli_env(database_url, tmp_path, JEM_SECRET_KEY="another-secret-key-of-enough-length-42")
    port = str(bind_probe("127.0.0.1", 0))
    line = one_line_error(await jem(wrong, "serve", "--no-dispatcher", "--port", port), 2)
    assert "JEM_SECRET_KEY" in line
