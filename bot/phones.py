"""Who an employee is on WhatsApp: E.164 phone numbers (normalised for storage, masked for anything a human or
a log sees) and business-scoped user ids (BSUIDs, docs/whatsapp.md#business-scoped-user-ids)."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
# "+44 (0)20 …": the national trunk prefix written in brackets after the country code is not dialled.
_TRUNK = re.compile(r"\(\s*0\s*\)")
# ASCII digits only: Python's \d also matches other scripts' digits, which WhatsApp would not accept.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


# A BSUID: the user's two-letter country code, a dot, an optional `ENT.` (a parent id), then Meta's id.
_USER_ID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")


class InvalidPhoneError(ValueError):
    pass


def normalise_phone(raw: str) -> str:
    """Return `+` and 8-15 digits; spaces, dashes, dots and brackets are dropped, `00` means `+`."""
    compact = _SEPARATORS.sub("", _TRUNK.sub("", raw.strip()))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        raise InvalidPhoneError(
            "must be in international E.164 form with a leading + and country code, e.g. +27821234567"
        )
    if not _E164.fullmatch(compact):
        raise InvalidPhoneError("must be + followed by 8 to 15 digits, not starting with 0 (E.164)")
    return compact


def from_wa_id(wa_id: str) -> str:
    """WhatsApp ids are E.164 digits without the +."""
    return "+" + wa_id.lstrip("+")


def mask_phone(phone: str) -> str:
    """`+27821234567` -> `+27•••••4567`: enough to recognise, not enough to dial."""
    if phone.startswith("erased:"):
        return phone  # an erased employee's placeholder (bot/employees/erasure.py): no number left to mask
    if len(phone) < 7:
        return "•" * len(phone)
    return phone[:3] + "•" * (len(phone) - 7) + phone[-4:]


def mask_id(value: str) -> str:
    """Mask a wamid or token for logs: keep a short tail to correlate lines."""
    return "…" + value[-6:] if len(value) > 6 else "…"


def user_id(value: str | None) -> str | None:
    """A business-scoped user id as Meta sends it, or None for anything else (absent, empty, malformed)."""
    if value is None:
        return None
    value = value.strip()
    return value if _USER_ID.fullmatch(value) else None
