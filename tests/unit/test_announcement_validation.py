"""Pure rules: Idempotency-Key syntax, the canonical-body fingerprint, send_time parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.announcements.idempotency import check_key, fingerprint
from bot.announcements.service import _send_at
from bot.contracts import FieldError
from bot.errors import BadRequestError, ValidationFailedError


def test_fingerprint_ignores_whitespace_and_key_order_but_not_values() -> None:
    a = fingerprint(b'{"message": "hi", "send_time": null}')
    assert a == fingerprint(b'{\n  "send_time": null,\n  "message": "hi"\n}')
    assert a != fingerprint(b'{"message": "hi!", "send_time": null}')
    assert len(a) == 64


def test_fingerprint_of_invalid_json_is_400() -> None:
    with pytest.raises(BadRequestError):
        fingerprint(b"{not json")


@pytest.mark.parametrize("key", ["a", "x" * 255, "550e8400-e29b-41d4-a716-446655440000", "!~"])
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "a b", "é", "a\x7f"])
def test_invalid_keys_name_the_header(key: str) -> None:
    with pytest.raises(ValidationFailedError) as info:
        check_key(key)
    assert info.value.errors is not None
    assert info.value.errors[0].field == "Idempotency-Key"


def test_send_time_rules() -> None:
    errors: list[FieldError] = []
    assert _send_at("2026-12-01T09:00:00+02:00", errors) == datetime(2026, 12, 1, 7, tzinfo=UTC)
    assert _send_at("2999-01-01T00:00:00Z", errors) == datetime(2999, 1, 1, tzinfo=UTC)
    assert datetime.now(UTC) - _send_at("2001-01-01T00:00:00Z", errors) < timedelta(seconds=5)
    assert errors == []
    _send_at("2026-12-01T09:00:00", errors)
    _send_at("soon", errors)
    assert [e.field for e in errors] == ["send_time", "send_time"]
    assert "UTC offset" in errors[0].message
