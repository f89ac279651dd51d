"""Keyset pagination: an opaque cursor holding the last id seen (lists are newest first)."""

from __future__ import annotations

import base64
import binascii

from bot.errors import NotFoundError, ValidationFailedError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_ID = 2**63 - 1  # ids are PostgreSQL bigint identities


def known_id(value: int, what: str) -> None:
    """An id in a path that PostgreSQL's bigint cannot hold names nothing: 404, as any unknown id is (the query
    would fail on the value instead, a 422 about a field the client never sent)."""
    if not 0 < value <= MAX_ID:
        raise NotFoundError(f"No such {what}.")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        # ASCII digits, and a positive PostgreSQL bigint: anything else would fail in the database as a 500.
        if prefix != "id" or not (value.isascii() and value.isdigit()) or not 0 < int(value) <= MAX_ID:
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailedError.one("cursor", "is not a cursor this API returned") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailedError.one("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def next_cursor(ids: list[int], limit: int) -> str | None:
    """Callers fetch limit+1 rows; a full extra row means there is another page."""
    return encode_cursor(ids[limit - 1]) if len(ids) > limit else None
