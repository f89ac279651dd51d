"""Opt-outs that outlive erasure: a keyed hash of the phone per employer, never the phone itself
(docs/architecture.md#erasure).

An erased employee's STOP must survive their erasure, or a later re-import of their number would message them
again. The employee row no longer holds the number, so the opt-out is kept as HMAC-SHA256(key, E.164 phone) in
`opt_out_hash`. The key is derived with HKDF from JEM_SECRET_KEY (under its own label, so it is unrelated to the
key that seals access tokens): phone numbers are few enough to enumerate, so an unkeyed hash in a database dump
would give every number back; with the key outside the database, the dump alone does not.

Every path that gives an employee a phone (POST /employees, the import, PATCH, Meta's changed-number message)
calls `restore`: a matching hash moves back onto the employee as `opted_out_at`. A START from the number clears
it (`forget`), as it clears an employee's opt-out.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto import MIN_SECRET_LENGTH, SecretKeyError
from bot.db.queries import query

# Changing either would make every stored hash unmatchable: they name this use of the secret, nothing more.
_SALT = b"jem-bot"
_INFO = b"jem-bot opt-out phone hashes v1"


class PhoneHasher:
    """HMAC-SHA256 of E.164 phones under a key derived from the installation's secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise SecretKeyError(f"JEM_SECRET_KEY must be a secret string of at least {MIN_SECRET_LENGTH} characters")
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret.encode())

    @classmethod
    def from_secret(cls, secret: str) -> PhoneHasher | None:
        """None when no JEM_SECRET_KEY is set: then no hash can be made or matched."""
        return cls(secret) if secret else None

    def digest(self, phone: str) -> bytes:
        return hmac.new(self._key, phone.encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:  # never show the key
        return "PhoneHasher(…)"


async def remember(session: AsyncSession, hasher: PhoneHasher, employer_id: int, phone: str) -> None:
    """Keep the employer's opt-out of this number, by its hash (the caller is erasing the employee)."""
    await session.execute(query("opt_out_hash_remember"), {"e": employer_id, "h": hasher.digest(phone)})


async def restore(session: AsyncSession, hasher: PhoneHasher | None, employer_id: int, phones: list[str]) -> None:
    """Employees of the employer who (again) have one of these numbers, which someone erased had opted out of,
    come back opted out; the hash is dropped, the opt-out lives on the employee again. Without a key nothing can
    match (the server refuses to start while hashes exist and no key is set: bot/runtime.py)."""
    if hasher is None or not phones:
        return
    hashes_ = [hasher.digest(p) for p in phones]
    await session.execute(query("opt_out_hash_restore"), {"e": employer_id, "phones": phones, "hashes": hashes_})


async def forget(session: AsyncSession, hasher: PhoneHasher | None, phone: str, own_employer: int | None) -> None:
    """START from this number: the opt-outs kept by hash at the employers the number written to serves (an
    employer's own number: that employer; the shared one: every employer without an own number) end."""
    if hasher is None:
        return
    await session.execute(query("opt_out_hash_forget"), {"h": hasher.digest(phone), "own": own_employer})
