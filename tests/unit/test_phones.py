from __future__ import annotations

import pytest

from bot.phones import InvalidPhoneError, from_wa_id, mask_id, mask_phone, normalise_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+27821234567", "+27821234567"),
        ("+27 82 123 4567", "+27821234567"),
        ("0027821234567", "+27821234567"),
        ("00 27 82 123 4567", "+27821234567"),
        (" +27-82-123-4567 ", "+27821234567"),
        ("+27 (82) 123.4567", "+27821234567"),
        ("+27 (0)82 123 4567", "+27821234567"),
        ("+44 (0) 20 7946 0958", "+442079460958"),
        ("+1 415 555 2671", "+14155552671"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_normalise_accepts_international_forms(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "0821234567",  # national form: no country code
        "27821234567",  # digits without + or 00 are ambiguous
        "+27",
        "+1234567",  # 7 digits: too short
        "+1234567890123456",  # 16 digits: too long
        "+0821234567",  # country codes never start with 0
        "+27 82 123 456a",
        "++27821234567",
        "+27821234567 ext 12",
        "+٢٧٨٢١٢٣٤٥٦٧",  # Arabic-Indic digits are digits to Python, not to WhatsApp
        "+27８２１２３４５６７",  # fullwidth digits
        "+27_821234567",
    ],
)
def test_normalise_rejects_everything_else(raw: str) -> None:
    with pytest.raises(InvalidPhoneError) as info:
        normalise_phone(raw)
    assert "\n" not in str(info.value)
    assert "E.164" in str(info.value)


def test_normalised_phones_are_ascii() -> None:
    assert normalise_phone("0027821234567").isascii()


def test_mask_phone_keeps_prefix_and_last_four() -> None:
    assert mask_phone("+27821234567") == "+27•••••4567"
    assert mask_phone("+12345678") == "+12••5678"
    assert "1234" not in mask_phone("+27821234567")[:-4]
    assert mask_phone("+123") == "••••"


def test_mask_id_keeps_a_short_tail() -> None:
    wamid = "wamid.HBgLMjc4MjEyMzQ1NjcVAgARGBI4QUQ5RjA0QTk2OEY2QUQxMzMA"
    masked = mask_id(wamid)
    assert masked == "…QxMzMA"
    assert wamid[:-6] not in masked
    assert mask_id("short") == "…"


def test_from_wa_id_adds_the_plus() -> None:
    assert from_wa_id("27821234567") == "+27821234567"
    assert from_wa_id("+27821234567") == "+27821234567"
