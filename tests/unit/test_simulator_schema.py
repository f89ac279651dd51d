"""Meta's OpenAPI description as the simulator corrects and uses it (bot/simulator/schema.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.graph.messages import choice_list, interactive_message, template_message, text_message
from bot.settings import Template
from bot.simulator.phone import inbound_body
from bot.simulator.schema import CORRECTIONS, SPEC, Correction, DiscriminatedValidator, SendSchema, load_schemas
from bot.simulator.validation import GraphError

PHONE = "27820000001"
# Meta's own request examples that its description refuses even corrected, each for a reason that is not ours
# to fix: nothing jem-bot sends looks like them (docs/whatsapp.md#metas-openapi-description-corrections-we-apply).
NOT_CORRECTED = {
    "Send Catalog Template Message": "sub_type 'CATALOG' in capitals",
    "Send Flow Template Message": "sub_type 'flow' is not in the enum",
    "Send Location Message": "latitude/longitude are numbers, the description says strings",
    "Send Reply to Location Message": "latitude/longitude are numbers, the description says strings",
    "Send Multi-Product Message": "a '<HEADER_TYPE>' placeholder",
    "Send Order Details Message": "interactive type order_details is not in the enum",
    "Send Order Status Message": "interactive type order_status is not in the enum",
    "Send Reply to List Message": "no `type`",
    "Send Text Message with Preview URL": "no `type`",
    "Send typing indicator and read receipt": "not a message",
}


def examples() -> dict[str, Any]:
    spec = json.loads(SPEC.read_bytes())
    found: dict[str, Any] = spec["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    return {name: example["value"] for name, example in found.items()}


def service_bodies() -> list[dict[str, Any]]:
    bsuid = "ZA.1234567890123456"
    employers = choice_list(body="Which employer is your message for?", button="Choose employer",
                            rows=[("employer:1", "Demo Ltd")])  # fmt: skip
    buttons = {"type": "button", "body": {"text": "Shift?"},
               "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": "Yes"}}]}}  # fmt: skip
    announcement = Template("staff_announcement", "en")
    return [
        text_message(to=PHONE, text="Fire drill at 14:00.", callback_data="jem:1:a"),
        text_message(to=PHONE, text="Unsubscribed.", callback_data="jem:2:b", recipient_user_id=bsuid),
        template_message(to=PHONE, template=announcement, text="Fire", callback_data="jem:3:c", ack_payload="ack:3"),
        interactive_message(to=PHONE, callback_data="jem:4:d", recipient_user_id=bsuid, interactive=employers),
        interactive_message(to=PHONE, callback_data="jem:5:e", interactive=buttons),
    ]


def test_metas_own_examples_pass_once_corrected() -> None:
    schema = SendSchema()
    refused = {}
    for name, body in examples().items():
        error = schema.sends.error(body)
        if error is not None:
            refused[name] = error.message
    assert set(refused) == set(NOT_CORRECTED), refused


def test_the_uncorrected_description_refuses_even_metas_text_example() -> None:
    raw = DiscriminatedValidator("Message", load_schemas(corrections=()))
    assert raw.error(examples()["Send Text Message"]) is not None
    assert all(raw.error(body) is not None for body in service_bodies())


@pytest.mark.parametrize("body", service_bodies(), ids=lambda b: f"{b['type']}-{'recipient' in b}")
def test_every_body_the_service_sends_passes(body: dict[str, Any]) -> None:
    SendSchema().check(body)


@pytest.mark.parametrize("correction", CORRECTIONS[:4], ids=lambda c: c.name)
def test_each_send_correction_is_needed(correction: Correction) -> None:
    without = DiscriminatedValidator("Message", load_schemas([c for c in CORRECTIONS if c is not correction]))
    assert any(without.error(body) is not None for body in service_bodies()), correction.why


def test_a_refusal_is_100_with_where_and_why() -> None:
    body = {**text_message(to=PHONE, text="hi", callback_data="c"), "text": {"body": "hi", "colour": "red"}}
    with pytest.raises(GraphError) as caught:
        SendSchema().check(body)
    assert (caught.value.status, caught.value.code, caught.value.message) == (400, 100, "Invalid parameter")
    assert caught.value.details.startswith("Param text: Additional properties are not allowed ('colour'")


def inbound_messages() -> list[dict[str, Any]]:
    context = {"from": "15550000001", "id": "wamid.X"}
    messages = [
        {"type": "text", "text": {"body": "STOP"}},
        {"context": context, "type": "text", "text": {"body": "Got it, thanks"}},
        {"context": context, "type": "button", "button": {"payload": "ack:1", "text": "Got it"}},
        {"context": context, "type": "interactive",
         "interactive": {"type": "list_reply", "list_reply": {"id": "employer:1", "title": "Demo Ltd"}}},
        {"context": context, "type": "interactive",
         "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
    ]  # fmt: skip
    bodies = [inbound_body(PHONE, message, username=username) for message in messages for username in (False, True)]
    return [body["entry"][0]["changes"][0]["value"]["messages"][0] for body in bodies]


@pytest.mark.parametrize("message", inbound_messages(), ids=lambda m: f"{m['type']}-{'from' in m}")
def test_the_simulators_inbound_messages_fit_metas_webhook_description(message: dict[str, Any]) -> None:
    assert SendSchema().inbound_problem(message) is None


@pytest.mark.parametrize("correction", CORRECTIONS[4:], ids=lambda c: c.name)
def test_each_webhook_correction_is_needed(correction: Correction) -> None:
    without = DiscriminatedValidator("IncomingMessage", load_schemas([c for c in CORRECTIONS if c is not correction]))
    assert any(without.error(message) is not None for message in inbound_messages()), correction.why
