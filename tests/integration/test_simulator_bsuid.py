"""The simulator and business-scoped user ids (BSUIDs): sends by `recipient`, `recipient_user_id` on statuses,
`--username-rate` employees whose messages carry `from_user_id` and no `from`, and `POST /_simulator/inbound`."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from bot.simulator.phone import bsuid_for, plays_username
from tests.integration.test_simulator import AUTH, SECRET, URL, Receiver, poll, simulator, text_send

PHONE = "27820000001"


def bsuid_send(bsuid: Any, callback: str | None = "d1", body: str = "Fire drill at 14:00") -> dict[str, Any]:
    message = text_send(callback=callback, body=body)
    del message["to"]
    return {**message, "recipient": bsuid}


def values(receiver: Receiver) -> list[dict[str, Any]]:
    return [p["entry"][0]["changes"][0]["value"] for p in receiver.payloads()]


def assert_signed(receiver: Receiver) -> None:
    for body, headers in receiver.posts:
        assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


async def test_a_send_may_name_a_handed_out_bsuid_and_counts_under_the_phone() -> None:
    async with simulator() as client:
        by_phone = (await client.post(URL, json=text_send(callback="d1"), headers=AUTH)).json()
        user_id = by_phone["contacts"][0]["user_id"]
        by_bsuid = await client.post(URL, json=bsuid_send(user_id, callback="d1"), headers=AUTH)
        other = await client.post(URL, json=bsuid_send(user_id, callback="d2"), headers=AUTH)
        stats = (await client.get("/_simulator/stats")).json()
        [listed] = (await client.get("/_simulator/sends")).json()["recipients"]
    assert user_id == bsuid_for(PHONE)
    assert by_phone["contacts"] == [{"input": "+27820000001", "wa_id": PHONE, "user_id": user_id}]
    assert by_bsuid.status_code == 200
    assert by_bsuid.json()["contacts"] == [{"input": user_id, "user_id": user_id}]
    assert by_bsuid.json()["messages"][0]["id"].startswith("wamid.")
    assert other.status_code == 200
    # One person, whichever id named them: the phone send and the BSUID send of "d1" are one duplicate.
    assert stats["messages_accepted"] == 3
    assert stats["recipients"] == 1
    assert stats["duplicates"] == 1
    assert stats["duplicate_sends"] == 1
    assert listed["recipient"] == PHONE
    assert listed["user_id"] == user_id
    assert [(m["key"], m["via"]) for m in listed["messages"]] == [("d1", "phone"), ("d1", "bsuid"), ("d2", "bsuid")]


async def test_to_wins_over_recipient() -> None:
    async with simulator() as client:
        user_id = (await client.post(URL, json=text_send(), headers=AUTH)).json()["contacts"][0]["user_id"]
        both = {**text_send(to="+27820000002", callback="d2"), "recipient": user_id}
        answer = (await client.post(URL, json=both, headers=AUTH)).json()
        listing = (await client.get("/_simulator/sends")).json()["recipients"]
    assert answer["contacts"] == [
        {"input": "+27820000002", "wa_id": "27820000002", "user_id": bsuid_for("27820000002")}
    ]
    assert {r["recipient"]: [m["via"] for m in r["messages"]] for r in listing} == {
        PHONE: ["phone"],
        "27820000002": ["phone"],
    }


@pytest.mark.parametrize(
    ("recipient", "code", "word"),
    [
        (bsuid_for("27829999999"), 131009, "recipient"),  # well-formed, but never handed out
        ("ZA.0000000000000000", 131009, "recipient"),
        ("27820000001", 131009, "recipient"),
        ("za.1502576394655843", 131009, "recipient"),
        ("ZA.", 131009, "recipient"),
        (1502576394655843, 131009, "recipient"),
        (None, 131008, "to"),
        ("  ", 131008, "to"),
    ],
)
async def test_unknown_or_malformed_bsuids_are_refused(recipient: Any, code: int, word: str) -> None:
    async with simulator() as client:
        await client.post(URL, json=text_send(), headers=AUTH)  # hands out PHONE's BSUID, not these
        message = {k: v for k, v in bsuid_send(recipient).items() if v is not None}
        response = await client.post(URL, json=message, headers=AUTH)
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert word in error["error_data"]["details"]
    assert stats["messages_accepted"] == 1
    assert stats["messages_rejected"] == 1


async def test_a_bsuid_is_unknown_until_handed_out_and_known_after_reset() -> None:
    async with simulator() as client:
        before = await client.post(URL, json=bsuid_send(bsuid_for(PHONE)), headers=AUTH)
        await client.post(URL, json=text_send(), headers=AUTH)
        await client.post("/_simulator/reset")
        after = await client.post(URL, json=bsuid_send(bsuid_for(PHONE)), headers=AUTH)
    assert before.json()["error"]["code"] == 131009
    assert after.status_code == 200


async def test_statuses_and_replies_carry_the_bsuid_next_to_the_number() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=1.0) as client:
        user_id = (await client.post(URL, json=text_send(), headers=AUTH)).json()["contacts"][0]["user_id"]
        await poll(lambda: len(receiver.posts) >= 4)
    assert_signed(receiver)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["recipient_id"] == PHONE
        assert status["recipient_user_id"] == user_id
    for value in values(receiver):
        assert value["contacts"] == [{"profile": {"name": "Employee"}, "wa_id": PHONE, "user_id": user_id}]
    [ack] = receiver.messages()
    assert ack["from"] == PHONE
    assert ack["from_user_id"] == user_id


async def test_a_send_by_bsuid_is_played_like_any_other() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=1.0) as client:
        await client.post(URL, json=text_send(callback="d1"), headers=AUTH)
        await poll(lambda: len(receiver.posts) >= 4)
        wamid = (await client.post(URL, json=bsuid_send(bsuid_for(PHONE), callback="d2"), headers=AUTH)).json()
        await poll(lambda: len(receiver.posts) >= 8)
    mine = [s for s in receiver.statuses() if s["id"] == wamid["messages"][0]["id"]]
    assert [(s["status"], s["recipient_id"], s["recipient_user_id"]) for s in mine] == [
        (status, PHONE, bsuid_for(PHONE)) for status in ("sent", "delivered", "read")
    ]


async def test_username_rate_1_withholds_every_number() -> None:
    receiver = Receiver()
    template = {
        "messaging_product": "whatsapp", "to": "+27820000001", "type": "template",
        "template": {"name": "staff_announcement", "language": {"code": "en"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "Hi"}]}]},
    }  # fmt: skip
    async with simulator(receiver, ack_rate=1.0, username_rate=1.0) as client:
        answer = (await client.post(URL, json=template, headers=AUTH)).json()
        await poll(lambda: len(receiver.posts) >= 4)
    user_id = bsuid_for(PHONE)
    # The send named a phone number, so its answer still has the wa_id (the business knows the number).
    assert answer["contacts"] == [{"input": "+27820000001", "wa_id": PHONE, "user_id": user_id}]
    assert_signed(receiver)
    for status in receiver.statuses():
        assert "recipient_id" not in status
        assert status["recipient_user_id"] == user_id
    expected = {"profile": {"name": "Employee", "username": "emp_0001"}, "user_id": user_id}
    for value in values(receiver):
        assert value["contacts"] == [expected]
    [tap] = receiver.messages()
    assert "from" not in tap
    assert tap["from_user_id"] == user_id
    assert tap["type"] == "button"


async def test_username_rate_1_stop_and_free_text_have_no_from() -> None:
    for rates, body in [({"ack_rate": 0.0, "stop_rate": 1.0}, "STOP"), ({"ack_rate": 0.0, "reply_rate": 1.0}, None)]:
        receiver = Receiver()
        async with simulator(receiver, username_rate=1.0, **rates) as client:
            await client.post(URL, json=text_send(), headers=AUTH)
            await poll(lambda: len(receiver.messages()) == 1)  # noqa: B023 - awaited within the iteration
        [message] = receiver.messages()
        assert "from" not in message
        assert message["from_user_id"] == bsuid_for(PHONE)
        if body is not None:
            assert message["text"]["body"] == body


async def test_a_partial_username_rate_is_a_fixed_choice_per_recipient() -> None:
    phones = [f"278200000{i:02d}" for i in range(12)]
    chosen = {phone: plays_username(phone, 0.5, 7) for phone in phones}
    assert set(chosen.values()) == {True, False}, "seed 7 must give both kinds for this test to mean anything"
    receiver = Receiver()
    async with simulator(receiver, ack_rate=1.0, username_rate=0.5) as client:
        for round_ in range(2):
            for phone in phones:
                send = text_send(to="+" + phone, callback=f"r{round_}")
                assert (await client.post(URL, json=send, headers=AUTH)).status_code == 200
        await poll(lambda: len(receiver.messages()) == 2 * len(phones))
    for message in receiver.messages():
        phone = next(p for p in phones if bsuid_for(p) == message["from_user_id"])
        assert ("from" not in message) == chosen[phone], phone
    for status in receiver.statuses():
        phone = next(p for p in phones if bsuid_for(p) == status["recipient_user_id"])
        assert ("recipient_id" not in status) == chosen[phone], phone


async def test_inbound_posts_a_signed_message_from_a_username_employee() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=0.0) as client:
        request = {"phone": "+27820000001", "text": "STOP", "context_wamid": "wamid.OURS", "username": True}
        answer = await client.post("/_simulator/inbound", json=request)
        # The BSUID was handed out by that message: a send may now name it.
        send = await client.post(URL, json=bsuid_send(bsuid_for(PHONE)), headers=AUTH)
        stats = (await client.get("/_simulator/stats")).json()
    assert answer.status_code == 200
    assert answer.json() == {"posted": True, "wamid": answer.json()["wamid"]}
    assert answer.json()["wamid"].startswith("wamid.")
    assert send.status_code == 200
    body, headers = receiver.posts[0]
    assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["object"] == "whatsapp_business_account"
    value = payload["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Employee", "username": "emp_0001"}, "user_id": bsuid_for(PHONE)}]
    [message] = value["messages"]
    assert "from" not in message
    assert message["from_user_id"] == bsuid_for(PHONE)
    assert message["id"] == answer.json()["wamid"]
    assert message["type"] == "text"
    assert message["text"] == {"body": "STOP"}
    assert message["context"] == {"from": "15550000001", "id": "wamid.OURS"}
    assert message["timestamp"].isdigit()
    assert stats["callbacks_posted"] == 1
    assert stats["replies_sent"] == 0


async def test_inbound_without_username_carries_the_number_and_follows_the_rate_by_default() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=0.0, username_rate=1.0) as client:
        plain = await client.post("/_simulator/inbound", json={"phone": "27820000002", "text": "hi", "username": False})
        default = await client.post("/_simulator/inbound", json={"phone": "+27820000003", "text": "hi"})
        tap = await client.post(
            "/_simulator/inbound",
            json={"phone": "+27820000004", "text": "Got it", "payload": "ack:7", "username": None},
        )
    assert [r.status_code for r in (plain, default, tap)] == [200, 200, 200]
    first, second, third = receiver.messages()
    assert (first["from"], first["from_user_id"]) == ("27820000002", bsuid_for("27820000002"))
    assert "context" not in first
    assert values(receiver)[0]["contacts"][0]["wa_id"] == "27820000002"
    assert "from" not in second  # --username-rate 1: the simulator's own choice
    assert second["from_user_id"] == bsuid_for("27820000003")
    assert "from" not in third
    assert (third["type"], third["button"]) == ("button", {"payload": "ack:7", "text": "Got it"})


async def test_inbound_without_a_webhook_is_409() -> None:
    async with simulator() as client:
        response = await client.post("/_simulator/inbound", json={"phone": "+27820000001", "text": "STOP"})
    assert response.status_code == 409


async def test_inbound_answers_502_when_the_webhook_keeps_refusing() -> None:
    receiver = Receiver(fail_first=100)
    async with simulator(receiver, ack_rate=0.0, callback_backoff_s=0.001) as client:
        response = await client.post("/_simulator/inbound", json={"phone": "+27820000001", "text": "STOP"})
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == 502
    assert response.json()["posted"] is False
    assert stats["callbacks_failed"] == 1


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ([1, 2], "body"),
        ("not json", "body"),
        ({"text": "STOP"}, "phone"),
        ({"phone": "+2782", "text": "STOP"}, "phone"),
        ({"phone": 27820000001, "text": "STOP"}, "phone"),
        ({"phone": "+27 82 000 0001", "text": "STOP"}, "phone"),
        ({"phone": "+27820000001"}, "text"),
        ({"phone": "+27820000001", "text": "  "}, "text"),
        ({"phone": "+27820000001", "text": "x" * 4097}, "text"),
        ({"phone": "+27820000001", "text": 5}, "text"),
        ({"phone": "+27820000001", "text": "hi", "context_wamid": 5}, "context_wamid"),
        ({"phone": "+27820000001", "text": "hi", "context_wamid": ""}, "context_wamid"),
        ({"phone": "+27820000001", "text": "hi", "payload": ["ack:1"]}, "payload"),
        ({"phone": "+27820000001", "text": "hi", "username": "yes"}, "username"),
        ({"phone": "+27820000001", "text": "hi", "username": 1}, "username"),
        ({"phone": "+27820000001", "text": "hi", "from_user_id": "ZA.1"}, "from_user_id"),
    ],
)
async def test_inbound_validation_names_the_field(request_body: Any, field: str) -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=0.0) as client:
        content = request_body if isinstance(request_body, str) else json.dumps(request_body)
        response = await client.post("/_simulator/inbound", content=content)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(f"{field}: ")
    assert receiver.posts == []
