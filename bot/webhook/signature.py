"""X-Hub-Signature-256 verification over the exact request bytes (docs/whatsapp.md#webhook-signature)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

PREFIX = b"sha256="


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(header: str | None, body: bytes, secrets: Sequence[str]) -> bool | None:
    """None when the header is missing (401), False when wrong (403), True when any secret matches.

    Compared as bytes: `hmac.compare_digest` on str raises TypeError for non-ASCII input, which an
    attacker-controlled header would turn into a 500.
    """
    if header is None or not header.strip():
        return None
    raw = header.strip().encode("utf-8", "surrogateescape")
    if not raw.lower().startswith(PREFIX):
        return False
    given = raw[len(PREFIX) :].lower()
    ok = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        # No early exit, so timing does not reveal which secret matched.
        ok |= hmac.compare_digest(given, expected)
    return ok
