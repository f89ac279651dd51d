"""Simulator building blocks: Meta-like validation, the signature, the duplicate count, CLI option checks."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re

import pytest

from bot.commands.simulator import add_arguments, config_from_args
from bot.settings import ConfigError, Settings
from bot.simulator.numbers import Numbers, SimulatedNumber, TokenBucket, display_number_for
from bot.simulator.phone import PHONE_NUMBER_ID, bsuid_for, inbound_body, plays_username, sign, status_body
from bot.simulator.stats import Stats
from bot.simulator.validation import (
    GraphError,
    Recipient,
    interactive_choices,
    interactive_text,
    validate,
    validate_send,
)


def test_validate_returns_recipient_digits_and_the_callback_as_dedup_key() -> None:
    body = {"messaging_product": "whatsapp", "to": "+27821234567", "type": "text", "text": {"body": "hi"},
            "biz_opaque_callback_data": "d7"}  # fmt: skip
    assert validate(body) == ("27821234567", "d7")
    del body["biz_opaque_callback_data"]
    assert validate(body) == ("27821234567", "hi")


def test_validate_rejects_a_non_object() -> None:
    with pytest.raises(GraphError) as caught:
        validate(["not", "an", "object"])
    assert caught.value.envelope()["error"]["code"] == 100


def test_sign_is_hmac_sha256_hex_over_the_bytes() -> None:
    body = b'{"a":"caf\\u00e9 / @"}'
    assert sign("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


def test_status_body_has_the_meta_shape() -> None:
    body = status_body("wamid.X", "delivered", "27821234567", "d1")
    value = body["entry"][0]["changes"][0]["value"]
    assert body["object"] == "whatsapp_business_account"
    assert body["entry"][0]["changes"][0]["field"] == "messages"
    assert value["statuses"][0]["biz_opaque_callback_data"] == "d1"
    assert value["statuses"][0]["recipient_id"] == "27821234567"


def test_stats_count_each_repeated_pair_once() -> None:
    stats = Stats()
    for recipient, key in [("1", "a"), ("1", "a"), ("2", "a"), ("1", "b"), ("2", "a"), ("2", "a")]:
        stats.record_send(recipient, key)
    snapshot = stats.snapshot()
    assert snapshot["duplicates"] == 2
    assert snapshot["duplicate_sends"] == 3
    assert snapshot["messages_accepted"] == 6


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(words))


def test_cli_defaults_the_secret_to_the_environment() -> None:
    settings = Settings(whatsapp_app_secrets=("env-secret", "old"))
    config = config_from_args(settings, parse("--webhook", "http://x/webhooks/whatsapp", "--ack-rate", "0.5"))
    assert config.app_secret == "env-secret"
    assert config.ack_rate == 0.5
    assert config.step_delay_s == 0.05


def test_cli_status_delay_sets_the_pause_before_each_status() -> None:
    config = config_from_args(Settings(), parse("--status-delay", "1.5"))
    assert config.step_delay_s == 1.5


@pytest.mark.parametrize(
    ("words", "needle"),
    [
        (("--fault-5xx", "1.5"), "--fault-5xx"),
        (("--latency-ms", "-1"), "--latency-ms"),
        (("--status-delay", "-0.1"), "--status-delay"),
        (("--status-delay", "nan"), "--status-delay"),
        (("--webhook", "http://x/hook"), "--app-secret"),
        (("--webhook", "ftp://x", "--app-secret", "s"), "--webhook"),
    ],
)
def test_cli_rejects_bad_options_in_one_line(words: tuple[str, ...], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as caught:
        config_from_args(Settings(), parse(*words))
    assert "\n" not in str(caught.value)


def test_bsuid_for_is_a_stable_country_prefixed_id() -> None:
    za = bsuid_for("27821234567")
    assert re.fullmatch(r"ZA\.\d{16}", za)
    assert bsuid_for("+27821234567") == za
    assert bsuid_for("27821234568") != za
    number = int.from_bytes(hashlib.sha256(b"27821234567").digest()[:8], "big") % 10**16
    assert za == f"ZA.{number:016d}"
    assert re.fullmatch(r"US\.\d{16}", bsuid_for("15551234567"))


def test_validate_send_maps_a_known_bsuid_to_its_phone_and_to_wins() -> None:
    bsuid = bsuid_for("27821234567")
    body = {"messaging_product": "whatsapp", "recipient": bsuid, "type": "text", "text": {"body": "hi"}}
    recipient, key = validate_send(body, {bsuid: "27821234567"})
    assert recipient == Recipient("27821234567", bsuid, "bsuid")
    assert key == "hi"
    assert validate(body, {bsuid: "27821234567"}) == ("27821234567", "hi")
    assert validate_send({**body, "to": "+27820000009"}, {bsuid: "27821234567"})[0] == Recipient(
        "27820000009", "+27820000009", "phone"
    )
    for directory in ({}, None):
        with pytest.raises(GraphError) as caught:
            validate(body, directory)
        assert caught.value.code == 131009


def test_status_and_inbound_bodies_withhold_the_number_of_a_username_employee() -> None:
    bsuid = bsuid_for("27821234567")
    plain = status_body("wamid.X", "read", "27821234567", None)["entry"][0]["changes"][0]["value"]
    assert plain["statuses"][0]["recipient_user_id"] == bsuid
    assert plain["contacts"] == [{"profile": {"name": "Employee"}, "wa_id": "27821234567", "user_id": bsuid}]
    hidden = status_body("wamid.X", "read", "27821234567", None, username=True)["entry"][0]["changes"][0]["value"]
    assert "recipient_id" not in hidden["statuses"][0]
    assert hidden["statuses"][0]["recipient_user_id"] == bsuid
    assert hidden["contacts"] == [{"profile": {"name": "Employee", "username": "emp_4567"}, "user_id": bsuid}]
    message = {"type": "text", "text": {"body": "STOP"}}
    [item] = inbound_body("27821234567", message, username=True, wamid="wamid.IN1")["entry"][0]["changes"][0]["value"][
        "messages"
    ]
    assert item == {"from_user_id": bsuid, "id": "wamid.IN1", "timestamp": item["timestamp"], **message}
    [item] = inbound_body("27821234567", message)["entry"][0]["changes"][0]["value"]["messages"]
    assert (item["from"], item["from_user_id"]) == ("27821234567", bsuid)


def test_plays_username_is_a_fixed_share_of_recipients() -> None:
    phones = [f"2782{i:07d}" for i in range(2000)]
    assert not any(plays_username(p, 0.0, 1) for p in phones)
    assert all(plays_username(p, 1.0, 1) for p in phones)
    chosen = [p for p in phones if plays_username(p, 0.3, 1)]
    assert 500 < len(chosen) < 700
    assert chosen == [p for p in phones if plays_username("+" + p, 0.3, 1)]
    assert chosen != [p for p in phones if plays_username(p, 0.3, 2)]


def test_cli_username_rate() -> None:
    assert config_from_args(Settings(), parse("--username-rate", "0.25")).username_rate == 0.25
    assert config_from_args(Settings(), parse()).username_rate == 0.0
    with pytest.raises(ConfigError, match="--username-rate"):
        config_from_args(Settings(), parse("--username-rate", "1.5"))


def test_cli_number_is_repeatable_with_an_optional_rate() -> None:
    config = config_from_args(Settings(), parse("--number", "100000000000002:tok-a:80", "--number", "1003:tok-b"))
    assert config.numbers == (
        SimulatedNumber("100000000000002", "tok-a", 80.0),
        SimulatedNumber("1003", "tok-b", None),
    )
    assert config_from_args(Settings(), parse()).numbers == ()


@pytest.mark.parametrize(
    "spec",
    [
        "1002",
        "1002:",
        ":s3cret",
        "10a2:s3cret",
        "1002:s3cret:fast",
        "1002:s3cret:0",
        "1002:s3cret:-5",
        "1002:s3cret:inf",
        "1002:s3cret:nan",
        "1002:s3cret:2:3",
        "1002:s3 cret",
    ],
)
def test_cli_rejects_a_bad_number_in_one_line_without_its_token(spec: str) -> None:
    with pytest.raises(ConfigError, match="--number") as caught:
        config_from_args(Settings(), parse("--number", spec))
    assert "\n" not in str(caught.value)
    assert "s3" not in str(caught.value)


def test_cli_rejects_the_same_number_twice() -> None:
    with pytest.raises(ConfigError, match="twice"):
        config_from_args(Settings(), parse("--number", "1002:a", "--number", "1002:b"))


def test_token_bucket_bursts_a_fifth_of_a_second_then_refills() -> None:
    now = [100.0]
    bucket = TokenBucket(40.0, clock=lambda: now[0])
    assert bucket.burst == 8.0
    assert [bucket.take() for _ in range(9)] == [True] * 8 + [False]
    now[0] += 0.125  # 5 more
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 60  # never more than the burst
    assert sum(bucket.take() for _ in range(20)) == 8
    slow = TokenBucket(2.0, clock=lambda: now[0])  # burst max(1, 0.4) = 1
    assert [slow.take(), slow.take()] == [True, False]
    now[0] += 0.5
    assert slow.take()


def test_numbers_know_their_ids_and_tokens() -> None:
    anything = Numbers(())
    assert anything.known("42")
    assert anything.token_ok("42", "any")
    numbers = Numbers((SimulatedNumber("1002", "tok"),))
    assert numbers.known("1002")
    assert numbers.known(PHONE_NUMBER_ID)
    assert not numbers.known("42")
    assert numbers.token_ok("1002", "tok")
    assert not numbers.token_ok("1002", "tok2")
    assert numbers.token_ok(PHONE_NUMBER_ID, "anything")
    numbers.replace_token("1002", "tok2")
    assert numbers.token_ok("1002", "tok2")
    assert not numbers.token_ok("1002", "tok")


def test_display_numbers() -> None:
    assert display_number_for(PHONE_NUMBER_ID) == "15550000001"
    assert display_number_for("100000000000002") == "15550000002"
    assert display_number_for("42") == "15550000042"
    assert SimulatedNumber("123456789012345", "t").display_number == "15559012345"


def test_bodies_name_the_number() -> None:
    value = status_body("wamid.X", "sent", "27821234567", None, number="1002")["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550001002", "phone_number_id": "1002"}
    message = {"type": "text", "text": {"body": "hi"}}
    value = inbound_body("27821234567", message)["entry"][0]["changes"][0]["value"]
    assert value["metadata"] == {"display_phone_number": "15550000001", "phone_number_id": PHONE_NUMBER_ID}


def _list(rows: list[dict[str, str]]) -> dict[str, object]:
    return {
        "messaging_product": "whatsapp",
        "to": "+27821234567",
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Which employer is your message for?"},
            "action": {"button": "Choose", "sections": [{"rows": rows}]},
        },
    }


def test_validate_an_interactive_list_and_its_readable_text() -> None:
    body = _list([{"id": "e1", "title": "Acme"}, {"id": "e2", "title": "Demo", "description": "Durban"}])
    assert validate(body) == ("27821234567", "Which employer is your message for? [Acme | Demo]")
    interactive = body["interactive"]
    assert isinstance(interactive, dict)
    assert interactive_text(interactive) == "Which employer is your message for? [Acme | Demo]"
    assert interactive_choices(interactive) == (
        "list_reply",
        [{"id": "e1", "title": "Acme"}, {"id": "e2", "title": "Demo", "description": "Durban"}],
    )
    with pytest.raises(GraphError) as caught:
        validate(_list([{"id": "e1", "title": "Acme"}, {"id": "e1", "title": "Demo"}]))
    assert caught.value.code == 131009
    assert "unique" in caught.value.details


def test_validate_reply_buttons() -> None:
    buttons = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(3)]
    body = {"messaging_product": "whatsapp", "to": "+27821234567", "type": "interactive",
            "interactive": {"type": "button", "body": {"text": "Which?"}, "action": {"buttons": buttons}}}  # fmt: skip
    assert validate(body) == ("27821234567", "Which? [B0 | B1 | B2]")
    assert interactive_choices(body["interactive"]) == ("button_reply", [b["reply"] for b in buttons])
    for bad, code in [
        (buttons * 2, 131009),
        ([], 131009),
        ([{"type": "reply", "reply": {"id": "x", "title": "t" * 21}}], 131009),
        ([{"type": "url", "reply": {"id": "x", "title": "t"}}], 131009),
        ([buttons[0], buttons[0]], 131009),
    ]:
        body["interactive"]["action"]["buttons"] = bad  # type: ignore[index]
        with pytest.raises(GraphError) as caught:
            validate(body)
        assert caught.value.code == code
