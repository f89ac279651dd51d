"""The WhatsApp simulator: Graph-like answers, signed callbacks over exact bytes, faults and stats."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from bot.simulator.app import create_simulator_app
from bot.simulator.phone import SimulatorConfig, bsuid_for

SECRET = "sim-test-secret"
URL = "/v23.0/100000000000001/messages"
AUTH = {"Authorization": "Bearer test-token"}


def text_send(
    to: str = "+27820000001", body: str = "Fire drill at 14:00", callback: str | None = "d1"
) -> dict[str, Any]:
    message: dict[str, Any] = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}
    if callback is not None:
        message["biz_opaque_callback_data"] = callback
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """A webhook stand-in that records the exact bytes and headers it was sent."""

    posts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    fail_first: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = 200
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 503
        else:
            self.posts.append((body, headers))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.posts]

    def statuses(self) -> list[dict[str, Any]]:
        return [s for p in self.payloads() for s in p["entry"][0]["changes"][0]["value"].get("statuses", [])]

    def messages(self) -> list[dict[str, Any]]:
        return [m for p in self.payloads() for m in p["entry"][0]["changes"][0]["value"].get("messages", [])]


@asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto"))
    task = asyncio.create_task(server._serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert not task.done(), "server stopped during start-up"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def simulator(receiver: Receiver | None = None, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    if receiver is not None:
        async with serving(receiver, free_port()) as hook_url:
            config = SimulatorConfig(
                webhook=f"{hook_url}/webhooks/whatsapp", app_secret=SECRET, step_delay_s=0, seed=7, **options
            )
            async with serving(create_simulator_app(config), free_port()) as url, httpx.AsyncClient(base_url=url) as c:
                yield c
    else:
        config = SimulatorConfig(seed=7, step_delay_s=0, **options)
        async with serving(create_simulator_app(config), free_port()) as url, httpx.AsyncClient(base_url=url) as c:
            yield c


async def poll(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


async def test_success_shape_and_unique_wamids() -> None:
    async with simulator() as client:
        first = await client.post(URL, json=text_send(), headers=AUTH)
        second = await client.post(URL, json=text_send(to="+27820000002", callback="d2"), headers=AUTH)
    assert first.status_code == 200
    body = first.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+27820000001", "wa_id": "27820000001", "user_id": bsuid_for("27820000001")}]
    assert body["messages"][0]["id"].startswith("wamid.")
    assert body["messages"][0]["id"] != second.json()["messages"][0]["id"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic x"}, {"Authorization": "Bearer"}])
async def test_missing_or_bad_bearer_is_190(headers: dict[str, str]) -> None:
    async with simulator() as client:
        response = await client.post(URL, json=text_send(), headers=headers)
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190
    assert response.json()["error"]["type"] == "OAuthException"
    assert stats["messages_accepted"] == 0


@pytest.mark.parametrize(
    ("change", "code", "word"),
    [
        ({"messaging_product": "sms"}, 100, "messaging_product"),
        ({"to": None}, 131008, "to"),
        ({"to": "not-a-number"}, 131009, "to"),
        ({"type": "carrier_pigeon"}, 100, "type"),
        ({"text": {"body": ""}}, 131008, "body"),
        ({"text": {"body": "x" * 4097}}, 131009, "body"),
        ({"type": "template", "template": {"language": {"code": "en"}}}, 131008, "name"),
        ({"type": "template", "template": {"name": "n"}}, 131008, "language"),
        ({"type": "template", "template": {"name": "n", "language": {"code": "en"}, "components": "x"}},
         131009, "components"),
        (
            {"type": "template", "template": {"name": "n", "language": {"code": "en"},
                                              "components": [{"type": "body", "parameters": [{"type": "text"}]}]}},
            132000,
            "text",
        ),
    ],
)  # fmt: skip
async def test_validation_errors_use_the_graph_envelope(change: dict[str, Any], code: int, word: str) -> None:
    message = {**text_send(), **change}
    message = {k: v for k, v in message.items() if v is not None}
    async with simulator() as client:
        response = await client.post(URL, json=message, headers=AUTH)
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert word in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert stats["messages_accepted"] == 0


async def test_missing_type_is_131008() -> None:
    message = text_send()
    del message["type"]
    async with simulator() as client:
        response = await client.post(URL, json=message, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 131008


async def test_a_valid_template_is_accepted() -> None:
    message = {
        "messaging_product": "whatsapp",
        "to": "+27820000001",
        "type": "template",
        "template": {"name": "staff_announcement", "language": {"code": "en"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "Hello"}]}]},
    }  # fmt: skip
    async with simulator() as client:
        response = await client.post(URL, json=message, headers=AUTH)
    assert response.status_code == 200


async def test_signed_callbacks_sent_delivered_read_then_an_ack() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=1.0, reply_rate=0.0) as client:
        wamid = (await client.post(URL, json=text_send(callback="delivery-42"), headers=AUTH)).json()["messages"][0][
            "id"
        ]
        await poll(lambda: len(receiver.posts) >= 4)
        stats = (await client.get("/_simulator/stats")).json()
    for body, headers in receiver.posts:
        # The signature is over the exact bytes on the wire.
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == expected
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == wamid
        assert status["biz_opaque_callback_data"] == "delivery-42"
        assert status["recipient_id"] == "27820000001"
        assert status["timestamp"].isdigit()
    [ack] = receiver.messages()
    assert ack["from"] == "27820000001"
    assert ack["context"]["id"] == wamid
    assert receiver.payloads()[0]["object"] == "whatsapp_business_account"
    assert stats["callbacks_posted"] == 4
    assert stats["replies"] == {"ack": 1}


async def test_template_ack_is_a_button_tap_and_stop_is_text() -> None:
    receiver = Receiver()
    template = {
        "messaging_product": "whatsapp", "to": "+27820000001", "type": "template",
        "template": {"name": "staff_announcement", "language": {"code": "en"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "Hi"}]}]},
    }  # fmt: skip
    async with simulator(receiver, ack_rate=1.0) as client:
        await client.post(URL, json=template, headers=AUTH)
        await poll(lambda: len(receiver.messages()) == 1)
    [tap] = receiver.messages()
    assert tap["type"] == "button"
    # Like Meta: a send that set no payload for the button gets the button's label as the payload.
    assert tap["button"] == {"payload": "Got it", "text": "Got it"}

    receiver = Receiver()
    async with simulator(receiver, ack_rate=0.0, stop_rate=1.0) as client:
        await client.post(URL, json=text_send(), headers=AUTH)
        await poll(lambda: len(receiver.messages()) == 1)
    assert receiver.messages()[0]["text"]["body"] == "STOP"


async def test_template_tap_echoes_the_quick_reply_payload_the_send_set() -> None:
    # Like Meta: the tap carries the payload the send gave the button (the bot puts the delivery id there).
    receiver = Receiver()
    button = {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "0",
        "parameters": [{"type": "payload", "payload": "ack:42"}],
    }
    template = {
        "messaging_product": "whatsapp", "to": "+27820000001", "type": "template",
        "template": {"name": "staff_announcement", "language": {"code": "en"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "Hi"}]}, button]},
    }  # fmt: skip
    async with simulator(receiver, ack_rate=1.0) as client:
        assert (await client.post(URL, json=template, headers=AUTH)).status_code == 200
        await poll(lambda: len(receiver.messages()) == 1)
    [tap] = receiver.messages()
    assert tap["button"] == {"payload": "ack:42", "text": "Got it"}


async def test_non_200_webhook_answers_are_retried() -> None:
    receiver = Receiver(fail_first=2)
    async with simulator(receiver, ack_rate=0.0, reply_rate=0.0, callback_backoff_s=0.01) as client:
        await client.post(URL, json=text_send(), headers=AUTH)
        await poll(lambda: len(receiver.statuses()) == 3)
        stats = (await client.get("/_simulator/stats")).json()
    assert stats["callback_retries"] == 2
    assert stats["callbacks_failed"] == 0


async def test_duplicate_rate_posts_callbacks_twice() -> None:
    receiver = Receiver()
    async with simulator(receiver, ack_rate=0.0, reply_rate=0.0, duplicate_rate=1.0) as client:
        await client.post(URL, json=text_send(), headers=AUTH)
        await poll(lambda: len(receiver.statuses()) == 6)
    assert sorted(s["status"] for s in receiver.statuses()) == ["delivered"] * 2 + ["read"] * 2 + ["sent"] * 2


@pytest.mark.parametrize(
    ("flag", "status", "code", "kind"),
    [
        ("fault_throttle", 400, 130429, "throttle"),
        ("fault_pair_rate", 400, 131056, "pair_rate"),
        ("fault_5xx", 500, 131000, "5xx"),
    ],
)
async def test_rejecting_faults_accept_nothing(flag: str, status: int, code: int, kind: str) -> None:
    async with simulator(**{flag: 1.0}) as client:
        response = await client.post(URL, json=text_send(), headers=AUTH)
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert stats["messages_accepted"] == 0
    assert stats["faults"] == {kind: 1}


async def test_undeliverable_is_accepted_then_a_failed_status() -> None:
    receiver = Receiver()
    async with simulator(receiver, fault_undeliverable=1.0) as client:
        response = await client.post(URL, json=text_send(callback="d9"), headers=AUTH)
        await poll(lambda: len(receiver.statuses()) == 1)
        stats = (await client.get("/_simulator/stats")).json()
    assert response.status_code == 200
    [failed] = receiver.statuses()
    assert failed["status"] == "failed"
    assert failed["errors"][0]["code"] == 131026
    assert failed["biz_opaque_callback_data"] == "d9"
    assert stats["faults"] == {"undeliverable": 1}
    assert stats["messages_accepted"] == 1


async def test_timeout_fault_accepts_the_message_but_answers_too_late() -> None:
    async with simulator(fault_timeout=1.0, timeout_hold_s=5.0) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(URL, json=text_send(), headers=AUTH, timeout=0.3)
        stats = (await client.get("/_simulator/stats")).json()
    assert stats["messages_accepted"] == 1
    assert stats["faults"] == {"timeout": 1}


async def test_a_send_whose_client_hung_up_before_it_was_read_is_abandoned_not_accepted() -> None:
    """The client gave up while the (slow) simulator had not read its request yet: nothing is accepted and the
    send is counted as abandoned, the real ambiguity a test must tell from the injected kind."""
    async with simulator(latency_ms=500) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(URL, json=text_send(), headers=AUTH, timeout=httpx.Timeout(5.0, read=0.1))
        await client.aclose()  # hang up: the simulator finds the client gone when it reads the body

        async def stats() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=str(client.base_url)) as fresh:
                return dict((await fresh.get("/_simulator/stats")).json())

        deadline = time.monotonic() + 5
        while (now := await stats())["abandoned"] == 0:
            assert time.monotonic() < deadline, now
            await asyncio.sleep(0.05)
    assert now["abandoned"] == 1
    assert now["messages_accepted"] == 0
    assert now["faults"] == {}


async def test_duplicates_count_recipients_that_got_the_same_message_twice() -> None:
    async with simulator() as client:
        for to, callback in [("+27820000001", "a"), ("+27820000001", "a"), ("+27820000001", "a"),
                             ("+27820000002", "a"), ("+27820000001", "b")]:  # fmt: skip
            assert (await client.post(URL, json=text_send(to=to, callback=callback), headers=AUTH)).status_code == 200
        stats = (await client.get("/_simulator/stats")).json()
        reset = (await client.post("/_simulator/reset")).json()
    assert stats["messages_accepted"] == 5
    assert stats["duplicates"] == 1
    assert stats["duplicate_sends"] == 2
    assert reset["messages_accepted"] == 0


async def test_latency_does_not_serialise_requests() -> None:
    async with simulator(latency_ms=200) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.post(URL, json=text_send(callback=f"c{i}"), headers=AUTH) for i in range(50))
        )
        elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in responses)
    assert 0.2 <= elapsed < 2.0
