"""API tokens: generated once, stored only as a hash, resolved to the employer they belong to."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.errors import UnauthorizedError

TOKEN_PREFIX = "jem_"  # noqa: S105  (a prefix, not a secret)
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: every query of a request is scoped by `employer_id`."""

    employer_id: int
    token_id: int
    timezone: str


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    # SHA-256 is enough: the token is 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(token.encode()).digest()


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise UnauthorizedError()
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("the Authorization header must be `Bearer <token>`")
    return token


async def authenticate(session: AsyncSession, authorization: str | None) -> Principal:
    token = bearer_token(authorization)
    row = (await session.execute(query("token_lookup"), {"h": hash_token(token)})).first()
    if row is None:
        raise UnauthorizedError("the token is invalid or revoked")
    # `last_used_at` to the minute (`jem-bot token list` shows it): a write at most once a minute per token, so a
    # busy portal's requests stay reads.
    if row.last_used_at is None or datetime.now(UTC) - row.last_used_at >= LAST_USED_RESOLUTION:
        await session.execute(query("token_touch"), {"id": row.id})
        await session.commit()
    return Principal(employer_id=row.employer_id, token_id=row.id, timezone=row.timezone)
