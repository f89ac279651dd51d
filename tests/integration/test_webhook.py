from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.webhook.signature import sign
from tests.conftest import APP_SECRET, VERIFY_TOKEN, Tenant

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "whatsapp-payloads"
CASES = [
    (f.name, name, body) for f in sorted(FIXTURES.glob("*.json")) for name, body in json.loads(f.read_text()).items()
]

URL = "/webhooks/whatsapp"


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"}


async def test_handshake(client: AsyncTestClient[Litestar]) -> None:
    ok = await client.get(
        URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "c1"}
    )
    assert ok.status_code == 200
    assert ok.text == "c1"
    bad = await client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "c1"})
    assert bad.status_code == 403


async def test_signature_rejections_store_nothing(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    body = json.dumps(CASES[0][2]).encode()
    assert (await client.post(URL, content=body)).status_code == 401
    assert (
        await client.post(URL, content=body, headers={"X-Hub-Signature-256": "sha256=ñ€ garbage".encode()})
    ).status_code == 403
    assert (await client.post(URL, content=body, headers=signed(body, "wrong"))).status_code == 403
    assert (await client.post(URL, content=b"not json", headers=signed(b"not json"))).status_code == 400
    async with db() as s:
        assert (await s.execute(text("SELECT count(*) FROM webhook_event"))).scalar() == 0


async def test_too_large(client: AsyncTestClient[Litestar]) -> None:
    body = b" " * (4 * 1024 * 1024 + 1)
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 413


@pytest.mark.parametrize(("file", "case", "payload"), CASES, ids=[f"{f}:{c}" for f, c, _ in CASES])
async def test_every_fixture_accepted_twice_without_double_effect(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], file: str, case: str, payload: object
) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    counts = []
    for _ in range(2):
        r = await client.post(URL, content=body, headers=signed(body))
        assert r.status_code == 200, r.text
        async with db() as s:
            counts.append(
                (
                    await s.execute(
                        text("SELECT (SELECT count(*) FROM webhook_event), (SELECT count(*) FROM inbound_message)")
                    )
                ).one()
            )
    assert counts[0] == counts[1]
    assert counts[0][0] > 0


def _status(wamid: str, status: str, ts: int, callback: str | None = None) -> bytes:
    st: dict[str, object] = {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": "27820000001"}
    if callback:
        st["biz_opaque_callback_data"] = callback
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"statuses": [st]}}]}],
        }
    ).encode()


async def _delivery(db: async_sessionmaker[AsyncSession], tenant: Tenant, status: str, wamid: str | None) -> int:
    async with db() as s, s.begin():
        emp = (
            await s.execute(
                text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, '+27820000001', 'A') RETURNING id"),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience) "
                    "VALUES (:e, 'hi', now(), '{}') RETURNING id"
                ),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        return (
            await s.execute(
                text(
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid) "
                    "VALUES (:e, :a, :m, 'announcement', :st, :w) RETURNING id"
                ),
                {"e": tenant.employer_id, "a": ann, "m": emp, "st": status, "w": wamid},
            )
        ).scalar_one()


async def test_statuses_forward_only_and_late_timestamps_kept(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    did = await _delivery(db, tenant, "sent", "wamid.A")
    for st in ("read", "delivered", "sent", "read"):
        body = _status("wamid.A", st, 1760000000)
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (
            await s.execute(
                text("SELECT status, delivered_at IS NOT NULL, read_at IS NOT NULL FROM delivery WHERE id=:i"),
                {"i": did},
            )
        ).one()
    assert tuple(row) == ("read", True, True)


async def test_unknown_delivery_resolved_by_callback_data(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    did = await _delivery(db, tenant, "unknown", None)
    body = _status("wamid.B", "delivered", 1760000000, str(did))
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (await s.execute(text("SELECT status, wamid FROM delivery WHERE id=:i"), {"i": did})).one()
    assert tuple(row) == ("delivered", "wamid.B")


def _inbound(wamid: str, *, body: str | None = None, context: str | None = None) -> bytes:
    msg: dict[str, object] = {"from": "27820000001", "id": wamid, "timestamp": "1760000000"}
    if body is not None:
        msg |= {"type": "text", "text": {"body": body}}
    else:
        msg |= {"type": "button", "button": {"payload": "ack", "text": "Got it"}}
    if context:
        msg["context"] = {"from": "1555", "id": context}
    value = {"messages": [msg]}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    ).encode()


async def test_ack_counted_once_when_tap_delivered_three_times(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    did = await _delivery(db, tenant, "delivered", "wamid.ANN")
    body = _inbound("wamid.TAP", context="wamid.ANN")
    for _ in range(3):
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (await s.execute(text("SELECT status, acknowledged_at FROM delivery WHERE id=:i"), {"i": did})).one()
        inbound = (await s.execute(text("SELECT count(*), min(delivery_id) FROM inbound_message"))).one()
    assert row[0] == "read"
    assert row[1] is not None
    assert tuple(inbound) == (1, did)


async def test_stop_three_times_opts_out_with_one_reply_then_start(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    await _delivery(db, tenant, "sent", "wamid.X")
    body = _inbound("wamid.STOP", body="  stop ")
    for _ in range(3):
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        opted = (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one()
        replies = (await s.execute(text("SELECT count(*) FROM delivery WHERE kind='reply'"))).scalar_one()
    assert opted is True
    assert replies == 1
    body = _inbound("wamid.START", body="START")
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        opted = (await s.execute(text("SELECT opted_out_at IS NOT NULL FROM employee"))).scalar_one()
        replies = (await s.execute(text("SELECT count(*) FROM delivery WHERE kind='reply'"))).scalar_one()
    assert opted is False
    assert replies == 2
