"""msgspec views of Meta's webhook bodies: every real-shaped fixture decodes, and nothing unexpected breaks them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bot.webhook.payloads import Envelope, Message, Status, decode_envelope
from bot.webhook.service import keyword

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp-payloads"
CASES = [
    (f"{f.stem}:{name}", body)
    for f in sorted(FIXTURES.glob("*.json"))
    for name, body in json.loads(f.read_text()).items()
]


def _case(case_id: str) -> dict[str, Any]:
    return next(body for cid, body in CASES if cid == case_id)


def _events(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [item for entry in body["entry"] for change in entry["changes"] for item in change["value"].get(name, [])]


def _message(case_id: str) -> Message:
    [raw] = _events(_case(case_id), "messages")
    return msgspec.convert(raw, Message)


def test_the_fixtures_are_here() -> None:
    # A fresh clone must carry its own copies; an empty glob would make the parametrised tests vanish silently.
    assert len(CASES) >= 40


@pytest.mark.parametrize(("case_id", "body"), CASES, ids=[c for c, _ in CASES])
def test_every_fixture_decodes_from_wire_bytes(case_id: str, body: dict[str, Any]) -> None:
    # Both encodings Meta could use on the wire: escaped (\u00e9) and raw UTF-8.
    for raw in (json.dumps(body).encode(), json.dumps(body, ensure_ascii=False).encode()):
        envelope = msgspec.json.decode(raw, type=Envelope)
        assert envelope.object == "whatsapp_business_account"
        changes = [c for e in envelope.entry or [] for c in e.changes or []]
        assert changes
        assert all(isinstance(c.value, dict) for c in changes)
    for raw_msg in _events(body, "messages"):
        msg = msgspec.convert(raw_msg, Message)
        assert (msg.id, msg.type) == (raw_msg["id"], raw_msg["type"])
    for raw_status in _events(body, "statuses"):
        st = msgspec.convert(raw_status, Status)
        assert st.status in {"sent", "delivered", "read", "played", "failed"}


def test_text_reply_and_its_context() -> None:
    msg = _message("message:reply")
    assert msg.type == "text"
    assert msg.shown_text == msg.text.body if msg.text else False
    assert msg.context is not None
    assert msg.context.id


def test_template_quick_reply_tap_with_and_without_context() -> None:
    tap = _message("callback_button:quick_reply")
    assert (tap.type, tap.shown_text, tap.words) == ("button", "title", ["title", "callback_data"])
    assert tap.context is not None
    assert tap.context.id == "wamid.xyzxyz=="
    bare = _message("callback_button:quick_reply_without_context")
    assert bare.context is None
    assert bare.shown_text == "title"
    # A payload we did not write names no delivery: the tap is kept for the inbox, never guessed.
    assert bare.acked_delivery_id is None


def test_interactive_button_and_list_replies() -> None:
    button = _message("callback_button:button")
    assert (button.type, button.shown_text, button.words) == ("interactive", "title", ["title", "callback_data"])
    choice = _message("callback_selection:callback")
    assert (choice.shown_text, choice.words) == ("title", ["title", "callback_data"])
    broken = _message("message:interactive_message_with_err")
    assert (broken.shown_text, broken.words, broken.acked_delivery_id) == (None, [], None)


def test_status_with_tracker_and_failed_errors() -> None:
    [raw] = _events(_case("message_status:with_tracker"), "statuses")
    assert msgspec.convert(raw, Status).biz_opaque_callback_data == "some data"
    [raw] = _events(_case("message_status:failed"), "statuses")
    failed = msgspec.convert(raw, Status)
    assert failed.errors is not None
    assert failed.errors[0]["code"] == 130472


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("ack:42", 42),
        ("ack:0042", 42),
        ("ack:", None),
        ("ack:x1", None),
        ("ack:-1", None),
        ("ack:١٢", None),  # Arabic-Indic digits pass str.isdigit but are not our ids
        ("ack:" + "9" * 19, None),  # beyond bigint: must not become a database error
        ("Got it", None),
        ("ACK:42", None),
    ],
)
def test_ack_payload_names_a_delivery_only_in_our_format(payload: str, expected: int | None) -> None:
    tap = msgspec.convert(
        {"id": "wamid.T", "type": "button", "button": {"payload": payload, "text": "Got it"}}, Message
    )
    assert tap.acked_delivery_id == expected
    reply = msgspec.convert(
        {
            "id": "wamid.I",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": payload}},
        },
        Message,
    )
    assert reply.acked_delivery_id == expected


def test_unknown_fields_and_kinds_are_tolerated() -> None:
    body = {
        "object": "whatsapp_business_account",
        "brand_new_top_level": {"x": 1},
        "entry": [
            {
                "id": "1",
                "time": 1760000000,
                "changes": [
                    {
                        "field": "messages",
                        "value": {"messages": [{"id": "wamid.N", "type": "hologram", "hologram": {}}]},
                    },
                    {"field": "calls", "value": ["not", "an", "object"]},
                    {"field": "account_alerts", "value": "a string"},
                ],
            }
        ],
    }
    envelope = msgspec.json.decode(json.dumps(body).encode(), type=Envelope)
    assert envelope.entry is not None
    changes = envelope.entry[0].changes or []
    assert [c.field for c in changes] == ["messages", "calls", "account_alerts"]
    assert changes[1].value == ["not", "an", "object"]
    msg = msgspec.convert(changes[0].value["messages"][0], Message)
    assert (msg.type, msg.shown_text, msg.words) == ("hologram", None, [])


def test_a_body_that_is_not_a_webhook_object_is_refused() -> None:
    for raw in (b"not json", b"[]", b'"text"', b'{"entry": "x"}', b'{"entry": [{"changes": 5}]}'):
        with pytest.raises(msgspec.DecodeError):
            msgspec.json.decode(raw, type=Envelope)


def test_an_event_of_an_unexpected_shape_fails_conversion_alone() -> None:
    # The service stores such an event under a hash of its content instead of failing the whole body.
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"id": 5, "status": "read"}, Status)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"id": "wamid.X", "context": "not an object"}, Message)


def _text(body: str) -> Message:
    return msgspec.convert({"id": "wamid.K", "type": "text", "text": {"body": body}}, Message)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", "stop"),
        ("  stop \n", "stop"),
        ("Stop", "stop"),
        ("unsubscribe", "stop"),
        (" UnSubscribe\t", "stop"),
        ("start", "start"),
        ("HELP ", "help"),
        ("stop please", None),
        ("STOP!", None),
        ("", None),
        ("Who do I ask about this?", None),
    ],
)
def test_typed_keywords_any_case_trimmed(body: str, expected: str | None) -> None:
    assert keyword(_text(body)) == expected


def test_keywords_on_buttons_and_interactive_replies() -> None:
    def tap(text: str, payload: str) -> Message:
        return msgspec.convert({"id": "w", "type": "button", "button": {"text": text, "payload": payload}}, Message)

    def choose(title: str, id_: str, kind: str = "button_reply") -> Message:
        raw = {"id": "w", "type": "interactive", "interactive": {"type": kind, kind: {"id": id_, "title": title}}}
        return msgspec.convert(raw, Message)

    assert keyword(tap("Stop", "opt-out")) == "stop"
    assert keyword(tap("Unsubscribe me", "STOP")) == "stop"  # the payload a template author gave the button
    assert keyword(tap("Got it", "ack:42")) is None
    assert keyword(choose("Help", "h1")) == "help"
    assert keyword(choose("Resume", "START", "list_reply")) == "start"
    # A caption is not a message to us: an image captioned "STOP" is kept for the inbox only.
    image = msgspec.convert({"id": "w", "type": "image", "image": {"caption": "STOP"}}, Message)
    assert keyword(image) is None


def test_nul_characters_become_replacement_characters() -> None:
    body = json.dumps({"entry": [{"changes": [{"field": "f\u0000", "value": {"k\u0000": ["\u0000", 1, None]}}]}]})
    envelope = decode_envelope(body.encode())
    assert envelope.entry is not None
    [change] = envelope.entry[0].changes or []
    assert (change.field, change.value) == ("f\ufffd", {"k\ufffd": ["\ufffd", 1, None]})
    # An escaped backslash followed by "u0000" is text, not a NUL: left as it is.
    literal = decode_envelope(b'{"entry": [{"changes": [{"field": "a\\\\u0000"}]}]}')
    assert literal.entry is not None
    assert (literal.entry[0].changes or [])[0].field == "a\\u0000"
    with pytest.raises(msgspec.DecodeError):
        decode_envelope(b'{"entry": "x", "y": "\\u0000"}')
