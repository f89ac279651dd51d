"""Simulator building blocks: Meta-like validation, the signature, the duplicate count, CLI option checks."""

from __future__ import annotations

import argparse
import hashlib
import hmac

import pytest

from bot.commands.simulator import add_arguments, config_from_args
from bot.settings import ConfigError, Settings
from bot.simulator.phone import sign, status_body
from bot.simulator.stats import Stats
from bot.simulator.validation import GraphError, validate


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
