"""Idempotency-Key for POST /announcements (draft-ietf-httpapi-idempotency-key-header, Stripe's storage rules).

The key row's primary key (employer_id, key) is the serialisation point: the first request inserts the row
as `running` and commits it at once, so every concurrent request with the same key either loses the insert
(and then sees `running` → 409, or `completed` → replay) or waits for the winner's insert to commit. The
winner stores the response in the same transaction that creates the announcement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.errors import BadRequestError, ConflictError, ValidationFailedError, problem_response

HEADER = "Idempotency-Key"
JSON = "application/json"
MAX_KEY_LENGTH = 255
# A request still working after this is presumed dead (crashed process): its key may be taken over.
LOCK_SECONDS = 60
# Kept at least 24 h (the draft's and Stripe's minimum).
RETAIN = timedelta(hours=24)
RETRY_AFTER_SECONDS = 1


class KeyInUseError(ConflictError):
    """A request with this Idempotency-Key is still being processed; retry after a moment."""

    def __init__(self) -> None:
        super().__init__()
        self.retry_after = RETRY_AFTER_SECONDS


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Lock:
    """Ownership of a `running` key: `locked_until` doubles as the owner's token."""

    employer_id: int
    key: str
    locked_until: datetime


def check_key(raw: str) -> str:
    """1 to 255 visible ASCII characters (0x21 to 0x7E)."""
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not all(0x21 <= ord(c) <= 0x7E for c in raw):
        raise ValidationFailedError.one(HEADER, f"must be 1–{MAX_KEY_LENGTH} visible ASCII characters")
    return raw


def fingerprint(body: bytes) -> str:
    """SHA-256 of the canonical body: decoded and re-encoded with sorted keys, so whitespace and key order
    do not matter."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("The request body is not valid JSON.") from None
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def acquire(session: AsyncSession, employer_id: int, key: str, fp: str) -> Lock | Replay:
    """Own the key (committed as `running`), or get the stored response to replay.

    Raises 422 when the key was used with a different body, 409 (KeyInUseError) while another request
    holds it.
    """
    params = {"employer_id": employer_id, "key": key, "fp": fp, "lock": LOCK_SECONDS, "retain": RETAIN}
    for _ in range(3):
        locked_until = (await session.execute(query("idempotency_insert"), params)).scalar_one_or_none()
        if locked_until is not None:
            await session.commit()
            return Lock(employer_id, key, locked_until)
        row = (await session.execute(query("idempotency_get"), params)).mappings().one_or_none()
        if row is None:
            # Purged or released between our insert and our read: try again.
            await session.rollback()
            continue
        if row["fingerprint"] != fp:
            await session.rollback()
            raise ValidationFailedError.one(
                HEADER, "was already used with a different request body; use a new key for a new request"
            )
        if row["state"] == "completed":
            await session.rollback()
            return Replay(row["response_status"], bytes(row["response_body"]))
        if row["stale"]:
            taken = (await session.execute(query("idempotency_take_over"), params)).scalar_one_or_none()
            if taken is not None:
                await session.commit()
                return Lock(employer_id, key, taken)
        await session.rollback()
        raise KeyInUseError()
    raise KeyInUseError()


async def complete(session: AsyncSession, lock: Lock, status: int, body: bytes) -> None:
    """Store the response; call inside the transaction that creates the resource, before its commit."""
    result = await session.execute(
        query("idempotency_complete"),
        {
            "employer_id": lock.employer_id,
            "key": lock.key,
            "locked_until": lock.locked_until,
            "status": status,
            "body": body,
            "retain": RETAIN,
        },
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        # Our lock expired and another request took the key over: let it win, create nothing here.
        raise KeyInUseError()


async def release(session: AsyncSession, lock: Lock) -> None:
    """Forget the key after a request that created nothing (bad input), so the client can fix and retry."""
    await session.rollback()
    await session.execute(
        query("idempotency_release"),
        {"employer_id": lock.employer_id, "key": lock.key, "locked_until": lock.locked_until},
    )
    await session.commit()


def _busy() -> Response[bytes]:
    exc = KeyInUseError()
    return problem_response(exc.status_code, exc.title, exc.detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def create_once(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    employer_id: int,
    idempotency_key: str | None,
    create: Callable[[], Awaitable[msgspec.Struct]],
    *,
    status_code: int,
    path: str | None = None,
) -> Response[bytes]:
    """Run ``create`` and answer ``status_code`` with what it made, at most once per Idempotency-Key.

    Without a key, simply create and commit. With one: a replay of the stored answer (`Idempotent-Replayed`), a
    409 while another request holds the key, or ``create`` with the answer stored in its transaction. ``path``,
    when given, is part of what the key is checked against: keys are the employer's, shared by every endpoint
    that takes them, and the same body sent to another path is another request (a 422), never a replay.
    """
    if idempotency_key is None:
        body = msgspec.json.encode(await create())
        await session.commit()
        return Response(body, status_code=status_code, media_type=JSON)

    key = check_key(idempotency_key)
    fp = fingerprint(await request.body())
    if path is not None:
        fp = hashlib.sha256(f"{path}\n{fp}".encode()).hexdigest()
    try:
        outcome = await acquire(session, employer_id, key, fp)
    except KeyInUseError:
        return _busy()
    if isinstance(outcome, Replay):
        return Response(
            outcome.body, status_code=outcome.status, media_type=JSON, headers={"Idempotent-Replayed": "true"}
        )
    try:
        body = msgspec.json.encode(await create())
        # Stored in the transaction that creates: a replay can never exist without what it describes, nor that
        # without the replay that stops a retry from creating it again.
        await complete(session, outcome, status_code, body)
        await session.commit()
    except KeyInUseError:
        await session.rollback()
        return _busy()
    except Exception:
        # Nothing was committed, so nothing was created (bad input the API or the database refused, a 404 or 409,
        # a lost connection): free the key so the corrected request, or the same one retried, can use it at once.
        with contextlib.suppress(Exception):  # the original error is the one to report
            await release(session, outcome)
        raise
    return Response(body, status_code=status_code, media_type=JSON)
