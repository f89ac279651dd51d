from __future__ import annotations

import base64

import pytest

from bot.errors import ValidationFailedError
from bot.pagination import MAX_LIMIT, check_limit, decode_cursor, encode_cursor, next_cursor


@pytest.mark.parametrize("last_id", [1, 42, 2**31, 2**63 - 1])
def test_cursor_round_trips(last_id: int) -> None:
    cursor = encode_cursor(last_id)
    assert "=" not in cursor
    assert decode_cursor(cursor) == last_id


def test_no_cursor_means_the_first_page() -> None:
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "%%%",
        "é",
        "a",
        _b64("id:"),
        _b64("id:-1"),
        _b64("id:x"),
        _b64("id:0"),
        _b64("foo:1"),
        _b64("1"),
        _b64("id:١٢"),  # non-ASCII digits
        _b64(f"id:{2**63}"),  # beyond PostgreSQL bigint: would fail in the database, not here
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_garbage_cursors_are_a_422_naming_cursor(cursor: str) -> None:
    with pytest.raises(ValidationFailedError) as info:
        decode_cursor(cursor)
    assert info.value.errors is not None
    assert [e.field for e in info.value.errors] == ["cursor"]
    assert info.value.status_code == 422


def test_next_cursor_only_when_an_extra_row_was_fetched() -> None:
    assert next_cursor([9, 8, 7], 3) is None
    assert next_cursor([9, 8], 3) is None
    cursor = next_cursor([9, 8, 7, 6], 3)
    assert cursor is not None
    assert decode_cursor(cursor) == 7


def test_check_limit() -> None:
    assert check_limit(1) == 1
    assert check_limit(MAX_LIMIT) == MAX_LIMIT
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValidationFailedError):
            check_limit(bad)
