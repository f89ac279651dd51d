from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logs import MaskingFormatter, mask

PHONE = "+27821234567"
WAMID = "wamid.HBgLMjc4MjEyMzQ1NjcVAgARGBI4QUQ5RjA0QTk2OEY2QUQxMzMA"
TOKEN = "jem_Qm9vZ2llLXdvb2dpZS10b2tlbi12YWx1ZS0xMjM0NTY3ODk"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("jem.test.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_formatter_masks_phones_wamids_and_tokens(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("sent to %s as %s with %s", PHONE, WAMID, TOKEN)
    logger.warning("wa_id %s replied", PHONE.removeprefix("+"))
    logger.warning("header was Authorization: Bearer %s", "EAAGm0PX4ZCpsBAKZCZB0x")
    out = stream.getvalue()
    for secret in (PHONE, PHONE[1:], "821234", WAMID, TOKEN, TOKEN[4:20], "EAAGm0PX4ZCpsBAKZCZB0x"):
        assert secret not in out, secret
    assert "4567" in out  # the tail that lets a human correlate lines
    assert "wamid.…" in out


def test_formatter_masks_tracebacks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"cannot send to {PHONE} with token {TOKEN}")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert "Traceback" in out
    assert PHONE not in out
    assert TOKEN not in out


@pytest.mark.parametrize(
    "text",
    [
        f"to={PHONE}",
        f'{{"to": "{PHONE[1:]}"}}',
        "phone +27 82 123 4567 rejected",
        "phone 0027821234567 rejected",
        "https://graph.test/v23.0/messages?access_token=EAAGsecretvalue123",
    ],
)
def test_mask_removes_the_sensitive_part(text: str) -> None:
    masked = mask(text)
    assert "821234" not in masked.replace(" ", "")
    assert "EAAGsecretvalue123" not in masked


def test_mask_leaves_ordinary_text_alone() -> None:
    line = "announcement 42 dispatched: 1200 deliveries in 3.5 s (rate 80/s) at 2026-11-28T16:00:00+00:00"
    assert mask(line) == line


@pytest.mark.parametrize(
    "text",
    [
        "reply from 082 555 0001",
        "reply from 082-555-0001",
        "reply from (082) 555 0001",
        "reply from (082) 555-0001.",
        "reply from 0825550001",
        '{"phone": "0825550001"}',
        "phone=082.555.0001&x=1",
    ],
)
def test_mask_hides_numbers_in_national_format(text: str) -> None:
    masked = mask(text)
    assert "555" not in masked, masked
    assert "0•••0001" in masked  # the tail, to correlate lines


@pytest.mark.parametrize(
    "text",
    [
        "UK 020 7946 0958 and 07700 900123",
        "DE 0151 12345678",
    ],
)
def test_mask_hides_other_countries_national_numbers(text: str) -> None:
    masked = mask(text)
    for part in ("7946", "900123", "1234"):
        assert part not in masked, masked


@pytest.mark.parametrize(
    "line",
    [
        "at 1732945839 (unix seconds)",
        "ts=1732945839123",
        "sender 100000000000001 paused",
        "2026-11-30 04:50:39.0123456 took 0.0123456789 s",
        "delivery 1234567 attempt 3 of 00012345, 0 sends, 10 000 rows",
        "claimed 25 rows in 012 ms; lease 13 s; backlog 4096",
        "sent to 0825550001 3 times",  # the count after a phone stays
        "pgdata /tmp/jem-0825550001/pgdata",
        "version 0.23.0 on port 08000",
    ],
)
def test_mask_leaves_timestamps_ids_counts_and_durations_alone(line: str) -> None:
    masked = mask(line)
    if "0825550001" in line and "/" not in line:
        assert masked == line.replace("0825550001", "0•••0001")
    else:
        assert masked == line
