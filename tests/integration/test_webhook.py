from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_app
from bot.maintenance import purge_webhook_events
from bot.settings import Settings
from bot.webhook.signature import sign
from tests.conftest import APP_SECRET, VERIFY_TOKEN, Tenant, tracker_for

# Real-shaped payloads kept in the repository: the suite must run from a fresh clone alone.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp-payloads"
CASES = [
    (f.name, name, body) for f in sorted(FIXTURES.glob("*.json")) for name, body in json.loads(f.read_text()).items()
]

URL = "/webhooks/whatsapp"


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(secret, body), "Content-Type": "application/json"}


def _handshake(
    mode: str | None = "subscribe", token: str | None = VERIFY_TOKEN, challenge: str = "c1"
) -> dict[str, str]:
    params = {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}
    return {k: v for k, v in params.items() if v is not None}


async def test_handshake(client: AsyncTestClient[Litestar]) -> None:
    ok = await client.get(
        URL, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "c1"}
    )
    assert ok.status_code == 200
    assert ok.text == "c1"
    bad = await client.get(URL, params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "c1"})
    assert bad.status_code == 403


async def test_handshake_answers_the_raw_challenge_as_plain_text(client: AsyncTestClient[Litestar]) -> None:
    # Meta compares the body with what it sent: no JSON quoting, no trimming, any characters.
    challenge = "1158201444 a/b@c é 👍"
    ok = await client.get(URL, params=_handshake(challenge=challenge))
    assert ok.status_code == 200
    assert ok.content == challenge.encode()
    assert ok.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        _handshake(mode="unsubscribe"),
        _handshake(mode=None),
        _handshake(token=None),
        _handshake(token=""),
        _handshake(token=VERIFY_TOKEN + "x"),
        _handshake(token=VERIFY_TOKEN.upper()),
        _handshake(token="ñ€ non-ascii"),  # compared as bytes: no TypeError, no 500
    ],
    ids=["wrong-mode", "no-mode", "no-token", "empty-token", "longer-token", "other-case", "non-ascii"],
)
async def test_handshake_refuses_anything_but_subscribe_with_the_token(
    client: AsyncTestClient[Litestar], params: dict[str, str]
) -> None:
    r = await client.get(URL, params=params)
    assert r.status_code == 403
    assert "c1" not in r.text


async def test_handshake_refused_when_no_verify_token_is_configured(
    settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    # An unset token must not make the empty string a valid answer.
    async with AsyncTestClient(app=create_app(settings.replace(whatsapp_verify_token=""))) as client:
        r = await client.get(URL, params=_handshake(token=""))
    assert r.status_code == 403


async def _stored(db: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with db() as s:
        row = (
            await s.execute(text("SELECT (SELECT count(*) FROM webhook_event), (SELECT count(*) FROM inbound_message)"))
        ).one()
    return int(row[0]), int(row[1])


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


async def test_missing_signature_is_401_and_a_wrong_one_403(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    # docs/api.md: missing -> 401 (who are you?), present but wrong -> 403 (not Meta); nothing stored either way.
    body = _inbound_text("wamid.SIG", "hello")
    good = sign(APP_SECRET, body)
    missing = [{}, {"X-Hub-Signature-256": ""}, {"X-Hub-Signature-256": "   "}]
    wrong = [
        {"X-Hub-Signature-256": good.removeprefix("sha256=")},  # no prefix
        {"X-Hub-Signature-256": "sha1=" + good.removeprefix("sha256=")},
        {"X-Hub-Signature-256": good[:-1] + ("0" if good[-1] != "0" else "1")},  # one hex digit off
        {"X-Hub-Signature-256": sign(APP_SECRET, body + b" ")},  # signature of other bytes
        {"X-Hub-Signature-256": "sha256="},
    ]
    for headers in missing:
        r = await client.post(URL, content=body, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 401, headers
    for headers in wrong:
        r = await client.post(URL, content=body, headers={**headers, "Content-Type": "application/json"})
        assert r.status_code == 403, headers
    assert await _stored(db) == (0, 0)
    # The header name is case-insensitive and Meta's signature is lowercase hex; either case is accepted.
    r = await client.post(URL, content=body, headers={"x-hub-signature-256": "sha256=" + good[7:].upper()})
    assert r.status_code == 200
    assert await _stored(db) == (1, 1)


async def test_non_ascii_bodies_verify_over_the_exact_bytes(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    # The characters that broke other receivers (docs/whatsapp.md#webhook-signature): "/", "@", accents, emoji,
    # in both wire forms.
    words = "Réunion à 14h/15h — écrivez à rh@exemple.fr 👍🏽 שלום"
    escaped = _inbound_text("wamid.ESC", words)  # json.dumps default: \u00e9, \ud83d\udc4d
    raw = json.dumps(json.loads(_inbound_text("wamid.RAW", words)), ensure_ascii=False).encode()
    slashes = escaped.replace(b"/", b"\\/").replace(b"wamid.ESC", b"wamid.SL")  # Facebook's older "\/" escaping
    assert b"\\u00e9" in escaped
    assert "é".encode() in raw
    for body in (escaped, raw, slashes):
        r = await client.post(URL, content=body, headers=signed(body))
        assert r.status_code == 200, r.text
    async with db() as s:
        texts = (await s.execute(text("SELECT wamid, text FROM inbound_message ORDER BY wamid"))).all()
    assert [tuple(t) for t in texts] == [("wamid.ESC", words), ("wamid.RAW", words), ("wamid.SL", words)]


async def test_any_configured_secret_verifies_during_rotation(
    settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    app = create_app(settings.replace(whatsapp_app_secrets=("new-secret", "old-secret")))
    async with AsyncTestClient(app=app) as client:
        for i, secret in enumerate(("new-secret", "old-secret")):
            body = _inbound_text(f"wamid.ROT{i}", "hi")
            assert (await client.post(URL, content=body, headers=signed(body, secret))).status_code == 200
        body = _inbound_text("wamid.ROT9", "hi")
        assert (await client.post(URL, content=body, headers=signed(body, APP_SECRET))).status_code == 403
    assert await _stored(db) == (2, 2)


async def test_too_large(client: AsyncTestClient[Litestar]) -> None:
    body = b" " * (4 * 1024 * 1024 + 1)
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 413


def _post_chunked(client: AsyncTestClient[Litestar], chunks: list[bytes], headers: dict[str, str]) -> int:
    """POST through the ASGI interface with no Content-Length, as a chunked upload arrives from uvicorn.

    The test client always sends a length, so it cannot show that the limit holds while the body streams in.
    The app runs in the client's portal (its own event loop), where the app's database engine lives.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    received = iter(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(received, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with client.portal() as portal:
        portal.call(client.app, scope, receive, send)  # type: ignore[arg-type]
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


async def test_too_large_without_content_length_and_just_under_the_limit(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    limit = 4 * 1024 * 1024
    big = b" " * (limit + 1)
    chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    assert _post_chunked(client, chunks, signed(big)) == 413
    # Exactly 4 MiB of valid JSON (padded with whitespace) is still accepted, streamed or not.
    for wamid in ("wamid.BIG1", "wamid.BIG2"):
        event = _inbound_text(wamid, "hello")
        at_limit = event + b" " * (limit - len(event))
        assert len(at_limit) == limit
        if wamid.endswith("1"):
            assert (await client.post(URL, content=at_limit, headers=signed(at_limit))).status_code == 200
        else:
            pieces = [at_limit[i : i + 65536] for i in range(0, len(at_limit), 65536)]
            assert _post_chunked(client, pieces, signed(at_limit)) == 200
    assert await _stored(db) == (2, 2)


@pytest.mark.parametrize("body", [b"not json", b"{", b"", b"\xff\xfe", b"[]", b'"text"', b'{"entry": "x"}'])
async def test_signed_body_that_is_not_a_webhook_json_object_is_400(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], body: bytes
) -> None:
    r = await client.post(URL, content=body, headers=signed(body))
    assert r.status_code == 400
    assert await _stored(db) == (0, 0)


async def test_failure_before_commit_is_5xx_and_stores_nothing(
    client: AsyncTestClient[Litestar],
    db: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    did = await _delivery(db, tenant, "sent", "wamid.F")
    inbound = json.loads(_inbound_text("wamid.F-IN", "hello"))
    statuses = json.loads(_status("wamid.F", "delivered", 1760000000))
    # One body, two changes: every event's dedup key is written first, then applying the status fails.
    inbound["entry"][0]["changes"] += statuses["entry"][0]["changes"]
    body = json.dumps(inbound).encode()

    async def broken(*args: object, **kwargs: object) -> str:
        raise ConnectionResetError("database went away mid-request")

    monkeypatch.setattr("bot.webhook.service.apply_statuses", broken)
    r = await client.post(URL, content=body, headers=signed(body))
    assert r.status_code == 500
    assert "database went away" not in r.text  # no internals in the answer
    # Nothing of the body is kept, not even the events handled before the failure: Meta's retry starts clean.
    assert await _stored(db) == (0, 0)
    monkeypatch.undo()
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert await _stored(db) == (2, 1)
    async with db() as s:
        assert (await s.execute(text("SELECT status FROM delivery WHERE id = :i"), {"i": did})).scalar_one() == (
            "delivered"
        )


def _wamids(payload: Any, key: str) -> set[str]:
    """Our messages a fixture refers to: its statuses' ids, or the `context.id` its messages answer."""
    values = [c["value"] for e in payload["entry"] for c in e["changes"] if isinstance(c.get("value"), dict)]
    if key == "status":
        return {st["id"] for v in values for st in v.get("statuses", [])}
    return {m["context"]["id"] for v in values for m in v.get("messages", []) if "id" in m.get("context", {})}


async def _seed_for(db: async_sessionmaker[AsyncSession], tenant: Tenant, payload: Any) -> None:
    """Give the fixture something to act on: its sender as an employee, its wamids as sent announcements."""
    async with db() as s, s.begin():
        emp = (
            await s.execute(
                text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, '+972987654321', 'F') RETURNING id"),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        ann = (
            await s.execute(
                text(
                    "INSERT INTO announcement (employer_id, message, send_at, audience, status) "
                    "VALUES (:e, 'hi', now(), '{}', 'completed') RETURNING id"
                ),
                {"e": tenant.employer_id},
            )
        ).scalar_one()
        for i, wamid in enumerate(sorted(_wamids(payload, "status") | _wamids(payload, "context"))):
            other = (
                await s.execute(
                    text("INSERT INTO employee (employer_id, phone, name) VALUES (:e, :p, 'G') RETURNING id"),
                    {"e": tenant.employer_id, "p": f"+2782999{i:04d}"},
                )
            ).scalar_one()
            await s.execute(
                text(
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid) "
                    "VALUES (:e, :a, :m, 'announcement', 'sent', :w)"
                ),
                {"e": tenant.employer_id, "a": ann, "m": emp if i == 0 else other, "w": wamid},
            )


async def _state(db: async_sessionmaker[AsyncSession]) -> tuple[object, ...]:
    """Everything a webhook may change, in a comparable form."""
    async with db() as s:
        return (
            await s.execute(
                text(
                    """
                    SELECT (SELECT count(*) FROM webhook_event),
                           (SELECT count(*) FROM inbound_message),
                           (SELECT count(*) FROM delivery WHERE kind = 'reply'),
                           (SELECT count(*) FROM employee WHERE opted_out_at IS NOT NULL),
                           (SELECT coalesce(json_agg(json_build_array(id, status, wamid, sent_at, delivered_at, read_at,
                                                      failed_at, error_code, acknowledged_at) ORDER BY id), '[]')::text
                            FROM delivery WHERE kind = 'announcement')
                    """
                )
            )
        ).one()


@pytest.mark.parametrize(("file", "case", "payload"), CASES, ids=[f"{f}:{c}" for f, c, _ in CASES])
async def test_every_fixture_accepted_twice_without_double_effect(
    client: AsyncTestClient[Litestar],
    db: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    file: str,
    case: str,
    payload: Any,
) -> None:
    await _seed_for(db, tenant, payload)
    before = await _state(db)
    # Meta's redelivery of the same events need not be the same bytes: raw UTF-8 first, \u-escaped second.
    states = []
    for body in (json.dumps(payload, ensure_ascii=False).encode(), json.dumps(payload).encode()):
        r = await client.post(URL, content=body, headers=signed(body))
        assert r.status_code == 200, r.text
        states.append(await _state(db))
    assert states[0] == states[1]
    assert states[0][0] > before[0]  # every body leaves at least one stored event
    if _wamids(payload, "context") or (_wamids(payload, "status") and case != "played"):
        # The seeded announcements were really acted on (a status applied, a reply acknowledged), once.
        assert states[0][4] != before[4]


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
                    "INSERT INTO delivery (employer_id, announcement_id, employee_id, kind, status, wamid, attempts, "
                    "claims) VALUES (:e, :a, :m, 'announcement', :st, :w, 1, 1) RETURNING id"
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
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET error_title='read timeout' WHERE id=:i"), {"i": did})
    body = _status("wamid.B", "delivered", 1760000000, await tracker_for(db, did))
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (await s.execute(text("SELECT status, wamid, error_title FROM delivery WHERE id=:i"), {"i": did})).one()
    # Settled: the reason it was unknown no longer applies.
    assert tuple(row) == ("delivered", "wamid.B", None)


async def _row(db: async_sessionmaker[AsyncSession], did: int) -> tuple[str, str | None]:
    async with db() as s:
        row = (await s.execute(text("SELECT status, wamid FROM delivery WHERE id=:i"), {"i": did})).one()
    return row[0], row[1]


async def test_another_apps_callback_data_never_moves_our_delivery(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    """Another integration on the same number puts its own data in biz_opaque_callback_data; a bare id such as
    "2", a tracker with a wrong MAC, or one for a different delivery must match nothing."""
    did = await _delivery(db, tenant, "unknown", None)
    genuine = await tracker_for(db, did)
    forged = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")
    other = await tracker_for(db, did + 1)
    for i, callback in enumerate([str(did), f"jem:{did}", forged, other, f"{genuine}x", genuine.upper()]):
        body = _status(f"wamid.OTHER{i}", "read", 1760000000, callback)
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
        assert await _row(db, did) == ("unknown", None), callback


async def test_our_tracker_matches_only_a_delivery_we_actually_sent(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    """A genuine tracker on a row never sent (attempts 0, pending) or already settled matches nothing."""
    did = await _delivery(db, tenant, "pending", None)
    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET attempts = 0, claims = 0 WHERE id = :i"), {"i": did})
    body = _status("wamid.NEVER", "read", 1760000000, await tracker_for(db, did))
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert await _row(db, did) == ("pending", None)

    async with db() as s, s.begin():
        await s.execute(text("UPDATE delivery SET status = 'sent', wamid = 'wamid.FIRST' WHERE id = :i"), {"i": did})
    body = _status("wamid.SECOND", "read", 1760000000, await tracker_for(db, did))
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert await _row(db, did) == ("sent", "wamid.FIRST")


async def test_a_status_carrying_our_tracker_settles_a_send_still_in_flight(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    """Meta's `sent` status can beat the answer to our own request: it is proof, so the row is `sent`."""
    did = await _delivery(db, tenant, "sending", None)
    body = _status("wamid.EARLY", "sent", 1760000000, await tracker_for(db, did))
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert await _row(db, did) == ("sent", "wamid.EARLY")


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


def _inbound_text(wamid: str, body: str, phone: str = "27820000001") -> bytes:
    return _inbound(wamid, body=body).replace(b'"27820000001"', json.dumps(phone).encode())


async def test_failed_is_terminal_with_its_error_and_each_status_keeps_its_own_time(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    did = await _delivery(db, tenant, "sent", "wamid.T")
    failed = json.loads(_status("wamid.T", "failed", 1760000300))
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = [
        {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}
    ]
    bodies = [
        _status("wamid.T", "sent", 1760000100),
        _status("wamid.T", "delivered", 1760000200),
        json.dumps(failed).encode(),
        _status("wamid.T", "read", 1760000400),  # after failed: recorded as evidence, the status stays failed
    ]
    for body in bodies:
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (
            await s.execute(
                text(
                    "SELECT status, error_code, error_title, extract(epoch FROM sent_at)::bigint, "
                    "extract(epoch FROM delivered_at)::bigint, extract(epoch FROM failed_at)::bigint, "
                    "extract(epoch FROM read_at)::bigint FROM delivery WHERE id = :i"
                ),
                {"i": did},
            )
        ).one()
    assert tuple(row) == (
        "failed", 131026, "Message undeliverable", 1760000100, 1760000200, 1760000300, 1760000400,
    )  # fmt: skip


async def test_unknown_kinds_and_fields_are_stored_counted_and_answered_200(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {"field": "account_alerts", "value": {"alert": "something new"}},
                        {"field": "calls", "value": [{"id": "call-1"}]},  # a value that is not an object
                        {
                            "field": "messages",
                            "value": {
                                "message_echoes": [{"id": "wamid.ECHO"}],  # an array we do not read
                                "messages": [
                                    {"from": "27820000001", "id": "wamid.H", "type": "hologram", "hologram": {}},
                                    {"from": "27820000001", "id": 12345, "type": "text"},  # id of the wrong type
                                    "not an object",
                                ],
                                "statuses": [{"id": "wamid.S", "status": "teleported", "timestamp": "x"}],
                            },
                        },
                    ],
                }
            ],
        }
    ).encode()
    for _ in range(2):
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        kinds = dict((await s.execute(text("SELECT kind, count(*) FROM webhook_event GROUP BY kind"))).all())
        inbound = (await s.execute(text("SELECT wamid, type, text FROM inbound_message"))).all()
    assert kinds == {"account_alerts": 1, "calls": 1, "messages.message_echoes": 1, "message": 3, "status": 1}
    assert [tuple(r) for r in inbound] == [("wamid.H", "hologram", None)]
    metrics = (await client.get("/metrics")).text
    assert 'jem_webhook_events_total{kind="account_alerts",result="new"} 1.0' in metrics
    assert 'jem_webhook_events_total{kind="account_alerts",result="duplicate"} 1.0' in metrics
    assert 'jem_webhook_events_total{kind="messages.message_echoes",result="new"} 1.0' in metrics
    assert 'jem_webhook_events_total{kind="message",result="new"} 3.0' in metrics


async def test_redelivery_within_eight_days_is_a_duplicate_and_keys_are_purged_after(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    # Meta retries for up to 7 days: a STOP redelivered on day 7 must not queue a second confirmation.
    await _delivery(db, tenant, "sent", "wamid.R")
    body = _inbound_text("wamid.R-STOP", "STOP")
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200

    async def age(by: timedelta) -> None:
        async with db() as s, s.begin():
            await s.execute(text("UPDATE webhook_event SET received_at = now() - CAST(:by AS interval)"), {"by": by})

    async def replies() -> int:
        async with db() as s:
            return int((await s.execute(text("SELECT count(*) FROM delivery WHERE kind = 'reply'"))).scalar_one())

    await age(timedelta(days=7, hours=23))
    assert await purge_webhook_events(db) == 0
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    assert await replies() == 1
    await age(timedelta(days=8, minutes=1))
    assert await purge_webhook_events(db) == 1
    assert await _stored(db) == (0, 1)  # the message itself stays in the inbox; only its dedup key went


async def test_a_nul_character_is_stored_as_a_replacement_character_not_refused(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession]
) -> None:
    # PostgreSQL refuses U+0000 in text and jsonb; refusing the body would make Meta retry it for a week.
    message = _inbound_text("wamid.NUL", "a\u0000b")
    assert b"\\u0000" in message
    other = json.dumps({"entry": [{"changes": [{"field": "x\u0000", "value": {"k\u0000": "\u0000"}}]}]}).encode()
    for body in (message, other):
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        assert (await s.execute(text("SELECT text FROM inbound_message"))).scalar_one() == "a\ufffdb"
        assert (await s.execute(text("SELECT kind FROM webhook_event WHERE kind <> 'message'"))).scalar_one() == (
            "x\ufffd"
        )


async def test_trackers_and_error_codes_we_did_not_write_never_fail_the_body(
    client: AsyncTestClient[Litestar], db: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    # Other apps on the same number may send their own biz_opaque_callback_data; Meta's codes may grow.
    did = await _delivery(db, tenant, "unknown", None)
    for i, callback in enumerate(["²", "١", "9" * 30, "-1", f"{did}.0"]):
        body = _status(f"wamid.X{i}", "delivered", 1760000000, callback)
        assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200, callback
    failed = json.loads(_status("wamid.Y", "failed", 1760000000, await tracker_for(db, did)))
    failed["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = [{"code": 2**40, "title": "New"}]
    body = json.dumps(failed).encode()
    assert (await client.post(URL, content=body, headers=signed(body))).status_code == 200
    async with db() as s:
        row = (await s.execute(text("SELECT status, wamid, error_code FROM delivery WHERE id = :i"), {"i": did})).one()
    assert tuple(row) == ("failed", "wamid.Y", None)
