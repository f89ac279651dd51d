"""The simulator plays several business numbers (`--number ID:TOKEN[:RATE]`): each its own token and throughput,
callbacks naming the number a message was sent from, inbound messages to a chosen number, interactive lists."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from bot.simulator.numbers import SimulatedNumber, display_number_for
from bot.simulator.phone import PHONE_NUMBER_ID
from tests.integration.test_simulator import Receiver, poll, simulator, text_send

ACME = "100000000000002"
DEMO = "100000000000003"
ACME_AUTH = {"Authorization": "Bearer acme-token"}
DEMO_AUTH = {"Authorization": "Bearer demo-token"}
ANY_AUTH = {"Authorization": "Bearer whatever"}
NUMBERS = (SimulatedNumber(ACME, "acme-token"), SimulatedNumber(DEMO, "demo-token"))


def url(number: str) -> str:
    return f"/v23.0/{number}/messages"


def metadata(payload: dict[str, Any]) -> dict[str, str]:
    value: dict[str, str] = payload["entry"][0]["changes"][0]["value"]["metadata"]
    return value


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.get("/_simulator/stats")).json()
    return answer


def employer_list(**changes: Any) -> dict[str, Any]:
    """The list the service sends to ask which employer a message is for; `changes` replace its parts."""
    interactive: dict[str, Any] = {
        "type": "list",
        "header": {"type": "text", "text": "Jem"},
        "body": {"text": "Which employer is your message for?"},
        "footer": {"text": "Pick one"},
        "action": {
            "button": "Choose employer",
            "sections": [
                {
                    "title": "Employers",
                    "rows": [
                        {"id": "employer:1", "title": "Acme Ltd", "description": "Cape Town"},
                        {"id": "employer:2", "title": "Demo Ltd"},
                    ],
                }
            ],
        },
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = interactive
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return {"messaging_product": "whatsapp", "to": "+27820000001", "type": "interactive", "interactive": interactive}


async def test_a_configured_number_takes_only_its_own_token_and_the_default_number_any() -> None:
    async with simulator(numbers=NUMBERS) as client:
        wrong = await client.post(url(ACME), json=text_send(callback="w"), headers=DEMO_AUTH)
        right = await client.post(url(ACME), json=text_send(callback="r"), headers=ACME_AUTH)
        default = await client.post(url(PHONE_NUMBER_ID), json=text_send(callback="d"), headers=ANY_AUTH)
        missing = await client.post(url(DEMO), json=text_send(callback="m"))
        counts = await stats(client)
        [listed] = (await client.get("/_simulator/sends")).json()["recipients"]
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert (error["code"], error["type"], error["message"]) == (
        190,
        "OAuthException",
        "(#190) Invalid OAuth access token",
    )
    assert ACME in error["error_data"]["details"]
    assert "acme-token" not in wrong.text
    assert "demo-token" not in wrong.text
    assert right.status_code == 200
    assert right.json()["messages"][0]["id"].startswith("wamid.")
    assert default.status_code == 200
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == 190
    assert counts["messages_accepted"] == 2
    assert counts["messages_rejected"] == 2
    assert counts["numbers"] == {
        ACME: {"accepted": 1, "rejected": 1, "faults": {}},
        DEMO: {"accepted": 0, "rejected": 1, "faults": {}},
        PHONE_NUMBER_ID: {"accepted": 1, "rejected": 0, "faults": {}},
    }
    # The refused send recorded nothing; each accepted one names the number it came from.
    assert [(m["key"], m["phone_number_id"]) for m in listed["messages"]] == [("r", ACME), ("d", PHONE_NUMBER_ID)]


async def test_without_numbers_any_id_takes_any_token_and_with_numbers_an_unknown_id_is_100() -> None:
    async with simulator() as client:
        anything = await client.post(url("987654321"), json=text_send(), headers=ANY_AUTH)
        counts = await stats(client)
    assert anything.status_code == 200
    assert counts["numbers"] == {"987654321": {"accepted": 1, "rejected": 0, "faults": {}}}

    async with simulator(numbers=NUMBERS) as client:
        unknown = await client.post(url("987654321"), json=text_send(), headers=ACME_AUTH)
        counts = await stats(client)
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert (error["code"], error["message"]) == (100, "(#100) Invalid parameter")
    assert "987654321" in error["error_data"]["details"]
    assert "unknown phone number id" in error["error_data"]["details"]
    assert counts["messages_rejected"] == 1
    assert counts["messages_accepted"] == 0
    assert "987654321" not in counts["numbers"]


async def test_a_burst_above_a_numbers_rate_gets_130429_and_spares_the_other_numbers() -> None:
    # 10/s: a burst of max(1, 10 * 0.2) = 2, then one more every 0.1 s.
    numbers = (SimulatedNumber(ACME, "acme-token", 10.0), SimulatedNumber(DEMO, "demo-token", 10.0))
    async with simulator(numbers=numbers) as client:
        burst = await asyncio.gather(
            *(client.post(url(ACME), json=text_send(callback=f"a{i}"), headers=ACME_AUTH) for i in range(12))
        )
        # The other numbers have their own buckets: untouched by ACME's burst.
        demo = [await client.post(url(DEMO), json=text_send(callback=f"d{i}"), headers=DEMO_AUTH) for i in range(2)]
        default = await asyncio.gather(
            *(client.post(url(PHONE_NUMBER_ID), json=text_send(callback=f"n{i}"), headers=ANY_AUTH) for i in range(12))
        )
        await asyncio.sleep(0.35)  # ACME's bucket refills (to its burst of 2)
        later = await client.post(url(ACME), json=text_send(callback="later"), headers=ACME_AUTH)
        counts = await stats(client)
    accepted = [r for r in burst if r.status_code == 200]
    refused = [r for r in burst if r.status_code != 200]
    assert 2 <= len(accepted) <= 4
    assert len(refused) == 12 - len(accepted)
    for response in refused:
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["code"], error["message"]) == (130429, "(#130429) Rate limit hit")
        assert ACME in error["error_data"]["details"]
        assert "messages" not in response.json()
    assert [r.status_code for r in demo] == [200, 200]
    assert [r.status_code for r in default] == [200] * 12  # no rate: unlimited
    assert later.status_code == 200
    assert counts["numbers"][ACME] == {"accepted": len(accepted) + 1, "rejected": 0,
                                       "faults": {"rate_limit": len(refused)}}  # fmt: skip
    assert counts["numbers"][DEMO] == {"accepted": 2, "rejected": 0, "faults": {}}
    assert counts["numbers"][PHONE_NUMBER_ID]["faults"] == {}
    assert counts["faults"] == {"rate_limit": len(refused)}
    assert counts["messages_accepted"] == len(accepted) + 1 + 2 + 12


async def test_replacing_a_token_mid_run_refuses_the_old_one() -> None:
    async with simulator(numbers=NUMBERS) as client:
        before = [await client.post(url(ACME), json=text_send(callback=f"b{i}"), headers=ACME_AUTH) for i in range(3)]
        replaced = await client.post(f"/_simulator/numbers/{ACME}/token", json={"token": "acme-rotated"})
        old = await client.post(url(ACME), json=text_send(callback="old"), headers=ACME_AUTH)
        new = await client.post(
            url(ACME), json=text_send(callback="new"), headers={"Authorization": "Bearer acme-rotated"}
        )
        untouched = await client.post(url(DEMO), json=text_send(callback="demo"), headers=DEMO_AUTH)
        default = await client.post(f"/_simulator/numbers/{PHONE_NUMBER_ID}/token", json={"token": "x"})
        unknown = await client.post("/_simulator/numbers/987/token", json={"token": "x"})
        bad = [
            await client.post(f"/_simulator/numbers/{ACME}/token", content=content)
            for content in ("not json", "[]", "{}", '{"token": ""}', '{"token": "a b"}', '{"token": 5}',
                            '{"token": "t", "rate": 5}')
        ]  # fmt: skip
        reset = await client.post("/_simulator/reset")
        after_reset = await client.post(url(ACME), json=text_send(callback="r"), headers=ACME_AUTH)
    assert [r.status_code for r in before] == [200, 200, 200]
    assert replaced.status_code == 200
    assert replaced.json() == {"phone_number_id": ACME, "replaced": True}
    assert "acme-rotated" not in replaced.text
    assert old.status_code == 401
    assert old.json()["error"]["code"] == 190
    assert new.status_code == 200
    assert untouched.status_code == 200
    assert default.status_code == 404  # the default number takes any token: nothing to replace
    assert unknown.status_code == 404
    assert ACME in unknown.json()["detail"]
    for response in bad:
        assert response.status_code == 422
        assert response.json()["field"] == "token"
    # Reset zeroes the counts (every configured number listed) and keeps the replaced token.
    assert reset.json()["numbers"] == {number: {"accepted": 0, "rejected": 0, "faults": {}} for number in (ACME, DEMO)}
    assert after_reset.status_code == 401


async def test_callbacks_and_replies_name_the_number_the_message_was_sent_from() -> None:
    receiver = Receiver()
    async with simulator(receiver, numbers=NUMBERS, ack_rate=1.0) as client:
        sent = {}
        for number, auth in ((ACME, ACME_AUTH), (DEMO, DEMO_AUTH), (PHONE_NUMBER_ID, ANY_AUTH)):
            response = await client.post(url(number), json=text_send(callback=f"from-{number}"), headers=auth)
            sent[response.json()["messages"][0]["id"]] = number
        await poll(lambda: len(receiver.posts) >= 12)
        listing = (await client.get("/_simulator/sends")).json()["recipients"]
    statuses = 0
    for payload in receiver.payloads():
        value = payload["entry"][0]["changes"][0]["value"]
        for status in value.get("statuses", []):
            statuses += 1
            number = sent[status["id"]]
            assert metadata(payload) == {"display_phone_number": display_number_for(number), "phone_number_id": number}
            assert status["biz_opaque_callback_data"] == f"from-{number}"
        for message in value.get("messages", []):
            number = sent[message["context"]["id"]]
            assert metadata(payload)["phone_number_id"] == number
            assert message["context"]["from"] == display_number_for(number)
    assert statuses == 9
    assert len(receiver.messages()) == 3
    assert display_number_for(ACME) == "15550000002"
    assert display_number_for(PHONE_NUMBER_ID) == "15550000001"
    [recipient] = listing
    assert {m["wamid"]: m["phone_number_id"] for m in recipient["messages"]} == sent


async def test_inbound_arrives_on_the_number_named_by_to_number() -> None:
    receiver = Receiver()
    async with simulator(receiver, numbers=NUMBERS, ack_rate=0.0) as client:
        default = await client.post("/_simulator/inbound", json={"phone": "+27820000001", "text": "hi"})
        acme = await client.post(
            "/_simulator/inbound",
            json={"phone": "+27820000001", "text": "hi Acme", "to_number": ACME, "context_wamid": "wamid.A"},
        )
        unknown = await client.post(
            "/_simulator/inbound", json={"phone": "+27820000001", "text": "x", "to_number": "9"}
        )
    assert [default.status_code, acme.status_code] == [200, 200]
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "to_number"
    assert ACME in unknown.json()["detail"]
    first, second = receiver.payloads()
    assert metadata(first) == {"display_phone_number": "15550000001", "phone_number_id": PHONE_NUMBER_ID}
    assert metadata(second) == {"display_phone_number": "15550000002", "phone_number_id": ACME}
    message = second["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["context"] == {"from": "15550000002", "id": "wamid.A"}
    assert message["text"] == {"body": "hi Acme"}


async def test_inbound_list_and_button_replies() -> None:
    receiver = Receiver()
    async with simulator(receiver, numbers=NUMBERS, ack_rate=0.0) as client:
        chosen = {"id": "employer:2", "title": "Demo Ltd"}
        listed = await client.post(
            "/_simulator/inbound",
            json={"phone": "+27820000001", "list_reply": chosen, "context_wamid": "wamid.Q", "to_number": DEMO},
        )
        described = await client.post(
            "/_simulator/inbound",
            json={"phone": "+27820000001", "list_reply": {**chosen, "description": "Durban"}, "username": False},
        )
        tapped = await client.post(
            "/_simulator/inbound", json={"phone": "+27820000001", "button_reply": {"id": "yes", "title": "Yes"}}
        )
    assert [r.status_code for r in (listed, described, tapped)] == [200, 200, 200]
    first, second, third = receiver.messages()
    assert first["type"] == "interactive"
    assert first["interactive"] == {"type": "list_reply", "list_reply": {"id": "employer:2", "title": "Demo Ltd"}}
    assert first["context"] == {"from": display_number_for(DEMO), "id": "wamid.Q"}
    assert "text" not in first
    assert metadata(receiver.payloads()[0])["phone_number_id"] == DEMO
    assert second["interactive"]["list_reply"] == {"id": "employer:2", "title": "Demo Ltd", "description": "Durban"}
    assert third["type"] == "interactive"
    assert third["interactive"] == {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"text": "hi", "list_reply": {"id": "a", "title": "A"}}, "list_reply"),
        ({"text": "hi", "payload": "ack:1", "button_reply": {"id": "a", "title": "A"}}, "button_reply"),
        ({"list_reply": {"id": "a", "title": "A"}, "button_reply": {"id": "a", "title": "A"}}, "button_reply"),
        ({"payload": "ack:1", "list_reply": {"id": "a", "title": "A"}}, "list_reply"),
        ({"list_reply": "employer:1"}, "list_reply"),
        ({"list_reply": {"id": "a"}}, "list_reply"),
        ({"list_reply": {"id": "", "title": "A"}}, "list_reply"),
        ({"list_reply": {"id": "a" * 201, "title": "A"}}, "list_reply"),
        ({"list_reply": {"id": "a", "title": "A" * 25}}, "list_reply"),
        ({"list_reply": {"id": "a", "title": "A", "extra": 1}}, "list_reply"),
        ({"button_reply": {"id": "a", "title": "A" * 21}}, "button_reply"),
        ({"button_reply": {"id": "a", "title": "A", "description": "no"}}, "button_reply"),
        ({"text": "hi", "to_number": 100000000000002}, "to_number"),
        ({}, "text"),
    ],
)
async def test_inbound_reply_validation_names_the_field(request_body: dict[str, Any], field: str) -> None:
    receiver = Receiver()
    async with simulator(receiver, numbers=NUMBERS, ack_rate=0.0) as client:
        response = await client.post(
            "/_simulator/inbound", content=json.dumps({"phone": "+27820000001", **request_body})
        )
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(f"{field}: ")
    assert receiver.posts == []


async def test_an_interactive_list_is_accepted_recorded_readably_and_answered_with_a_row() -> None:
    receiver = Receiver()
    async with simulator(receiver, numbers=NUMBERS, ack_rate=1.0) as client:
        message = {**employer_list(), "biz_opaque_callback_data": "ask:1"}
        answer = await client.post(url(ACME), json=message, headers=ACME_AUTH)
        await poll(lambda: len(receiver.messages()) == 1)
        [recipient] = (await client.get("/_simulator/sends")).json()["recipients"]
        counts = await stats(client)
    assert answer.status_code == 200
    [sent] = recipient["messages"]
    assert sent["type"] == "interactive"
    assert sent["text"] == "Which employer is your message for? [Acme Ltd | Demo Ltd]"
    assert (sent["key"], sent["phone_number_id"]) == ("ask:1", ACME)
    [reply] = receiver.messages()
    assert reply["type"] == "interactive"
    assert reply["context"] == {"from": display_number_for(ACME), "id": answer.json()["messages"][0]["id"]}
    assert reply["interactive"]["type"] == "list_reply"
    assert reply["interactive"]["list_reply"] in (
        {"id": "employer:1", "title": "Acme Ltd", "description": "Cape Town"},
        {"id": "employer:2", "title": "Demo Ltd"},
    )
    assert metadata(receiver.payloads()[-1])["phone_number_id"] == ACME
    assert counts["replies"] == {"choice": 1}


def _rows(count: int) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "title": f"Row {i}"} for i in range(count)]


@pytest.mark.parametrize(
    ("changes", "code", "word"),
    [
        ({"body__text": "x" * 1025}, 131009, "1024"),
        ({"body__text": "  "}, 131008, "body"),
        ({"body": None}, 131008, "body"),
        ({"action__button": "x" * 21}, 131009, "button"),
        ({"action__button": None}, 131008, "button"),
        ({"action__sections": []}, 131009, "sections"),
        ({"action__sections": [{"title": f"S{i}", "rows": _rows(1)} for i in range(11)]}, 131009, "sections"),
        ({"action__sections": "rows"}, 100, "sections"),
        ({"action__sections__0__rows": _rows(11)}, 131009, "10 rows"),
        ({"action__sections": [{"title": "A", "rows": _rows(6)}, {"title": "B", "rows": _rows(5)}]}, 131009, "rows"),
        ({"action__sections__0__rows": []}, 131009, "rows"),
        ({"action__sections__0__rows__0__title": "x" * 25}, 131009, "title"),
        ({"action__sections__0__rows__0__title": None}, 131008, "title"),
        ({"action__sections__0__rows__0__id": "x" * 201}, 131009, "id"),
        ({"action__sections__0__rows__1__id": "employer:1"}, 131009, "unique"),
        ({"action__sections__0__rows__0__description": "x" * 73}, 131009, "description"),
        ({"action__sections": [{"rows": _rows(1)}, {"title": "B", "rows": [{"id": "z", "title": "Z"}]}]},
         131008, "title"),
        ({"action": None}, 131008, "action"),
        ({"header": {"type": "image", "image": {"link": "https://x"}}}, 131009, "header"),
        ({"header__text": "x" * 61}, 131009, "header"),
        ({"footer__text": "x" * 61}, 131009, "footer"),
        ({"type": "carousel_of_doom"}, 100, "type"),
    ],
)  # fmt: skip
async def test_interactive_list_validation_errors(changes: dict[str, Any], code: int, word: str) -> None:
    async with simulator(numbers=NUMBERS) as client:
        response = await client.post(url(ACME), json=employer_list(**changes), headers=ACME_AUTH)
        counts = await stats(client)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert word in error["error_data"]["details"]
    assert counts["messages_accepted"] == 0
    assert counts["numbers"][ACME] == {"accepted": 0, "rejected": 1, "faults": {}}


async def test_interactive_list_limits_are_inclusive() -> None:
    at_limits = employer_list(
        body__text="x" * 1024,
        action__button="b" * 20,
        action__sections=[{"title": "t" * 24, "rows": [{"id": "i" * 200, "title": "r" * 24, "description": "d" * 72}]}]
        + [{"title": f"S{i}", "rows": [{"id": f"r{i}", "title": f"Row {i}"}]} for i in range(9)],
    )
    async with simulator() as client:
        response = await client.post(url(PHONE_NUMBER_ID), json=at_limits, headers=ANY_AUTH)
    assert response.status_code == 200
