"""Announcements: validation, create, read (with ledger counts), list, patch, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.contracts import MAX_MESSAGE_LENGTH, FieldError
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError
from bot.ledger.counts import counts_for
from bot.pagination import MAX_ID
from bot.phones import mask_phone


def _message(raw: str, errors: list[FieldError]) -> str:
    message = raw.strip()
    if not 1 <= len(message) <= MAX_MESSAGE_LENGTH:
        errors.append(FieldError(field="message", message=f"must be 1–{MAX_MESSAGE_LENGTH} characters after trimming"))
    return message


def _send_at(raw: str | None, errors: list[FieldError]) -> datetime:
    """Absent, null or past → now; naive → error (we never guess a timezone)."""
    now = datetime.now(UTC)
    if raw is None:
        return now
    try:
        when = datetime.fromisoformat(raw.strip())
    except ValueError:
        errors.append(FieldError(field="send_time", message="must be an ISO 8601 date-time with a UTC offset"))
        return now
    if when.tzinfo is None or when.utcoffset() is None:
        errors.append(FieldError(field="send_time", message="must carry a UTC offset, e.g. 2026-12-01T09:00:00+02:00"))
        return now
    return max(when, now)


async def _audience(
    session: AsyncSession, employer_id: int, audience: contracts.Audience | None, errors: list[FieldError]
) -> dict[str, Any]:
    if audience is None:
        return {"all": True}
    given = [name for name in ("all", "tags", "employee_ids") if getattr(audience, name) is not None]
    if len(given) != 1:
        errors.append(FieldError(field="audience", message="must have exactly one of all, tags, employee_ids"))
        return {}
    if audience.all is not None:
        if audience.all is not True:
            errors.append(FieldError(field="audience.all", message="must be true (or use tags / employee_ids)"))
        return {"all": True}
    if audience.tags is not None:
        # Employee tags are stored trimmed and lower-cased; match them the same way.
        tags = list(dict.fromkeys(t.strip().lower() for t in audience.tags if t.strip()))
        if not tags:
            errors.append(FieldError(field="audience.tags", message="must list at least one non-empty tag"))
        return {"tags": tags}
    ids = list(dict.fromkeys(audience.employee_ids or []))
    if not ids:
        errors.append(FieldError(field="audience.employee_ids", message="must list at least one employee id"))
        return {"employee_ids": ids}
    valid_range = [i for i in ids if 0 < i <= MAX_ID]
    known = set((await session.execute(query("employees_known"), {"e": employer_id, "ids": valid_range})).scalars())
    unknown = [i for i in ids if i not in known]
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:20]) + (" …" if len(unknown) > 20 else "")
        errors.append(FieldError(field="audience.employee_ids", message=f"unknown employee ids: {shown}"))
    return {"employee_ids": ids}


def _to_contract(row: Any, counts: contracts.Counts) -> contracts.Announcement:
    return contracts.Announcement(
        id=row.id,
        message=row.message,
        send_time=row.send_at,
        status=row.status,
        audience=msgspec.convert(row.audience, contracts.Audience),
        created_at=row.created_at,
        dispatched_at=row.dispatched_at,
        completed_at=row.completed_at,
        cancelled_at=row.cancelled_at,
        counts=counts,
    )


async def create(
    session: AsyncSession, employer_id: int, token_id: int | None, data: contracts.AnnouncementIn
) -> contracts.Announcement:
    """Insert the announcement as `scheduled` (the dispatcher fans it out at send time). Does not commit."""
    errors: list[FieldError] = []
    message = _message(data.message, errors)
    send_at = _send_at(data.send_time, errors)
    audience = await _audience(session, employer_id, data.audience, errors)
    if errors:
        raise ValidationFailedError.many(errors)
    params = {"e": employer_id, "m": message, "s": send_at, "a": msgspec.json.encode(audience).decode(), "t": token_id}
    row = (await session.execute(query("announcement_insert"), params)).one()
    if row.send_at <= datetime.now(UTC):
        await session.execute(query("wake_dispatchers"))
    return _to_contract(row, contracts.Counts())


async def get(session: AsyncSession, employer_id: int, announcement_id: int) -> contracts.Announcement:
    row = (await session.execute(query("announcement_get"), {"id": announcement_id, "e": employer_id})).one_or_none()
    if row is None:
        raise NotFoundError("No such announcement.")
    counts = await counts_for(session, [row.id])
    return _to_contract(row, counts[row.id])


async def list_page(
    session: AsyncSession, employer_id: int, *, status: str | None, after_id: int | None, limit: int
) -> list[contracts.Announcement]:
    """Newest first; fetches limit+1 rows so the caller can tell whether another page exists."""
    params = {"e": employer_id, "status": status, "after": after_id, "n": limit + 1}
    rows = (await session.execute(query("announcement_page"), params)).all()
    counts = await counts_for(session, [r.id for r in rows[:limit]])
    return [_to_contract(r, counts.get(r.id, contracts.Counts())) for r in rows]


async def patch(
    session: AsyncSession, employer_id: int, announcement_id: int, data: contracts.AnnouncementPatch
) -> contracts.Announcement:
    """Change a `scheduled` announcement. The conditional UPDATE cannot race with fan-out: once the
    dispatcher has moved it to `dispatching`, no row matches and the answer is 409. Does not commit."""
    errors: list[FieldError] = []
    params: dict[str, Any] = {
        "id": announcement_id,
        "e": employer_id,
        "set_message": False,
        "m": None,
        "set_send_at": False,
        "s": None,
        "set_audience": False,
        "a": None,
    }
    if not isinstance(data.message, msgspec.UnsetType):
        params |= {"set_message": True, "m": _message(data.message, errors)}
    if not isinstance(data.send_time, msgspec.UnsetType):
        params |= {"set_send_at": True, "s": _send_at(data.send_time, errors)}
    if not isinstance(data.audience, msgspec.UnsetType):
        audience = await _audience(session, employer_id, data.audience, errors)
        params |= {"set_audience": True, "a": msgspec.json.encode(audience).decode()}
    if errors:
        raise ValidationFailedError.many(errors)
    row = (await session.execute(query("announcement_patch"), params)).one_or_none()
    if row is None:
        current = await get(session, employer_id, announcement_id)  # 404 when it is not ours
        raise ConflictError(f"Only a scheduled announcement can be changed; this one is {current.status}.")
    if row.send_at <= datetime.now(UTC):
        await session.execute(query("wake_dispatchers"))
    counts = await counts_for(session, [row.id])
    return _to_contract(row, counts[row.id])


async def ensure_exists(session: AsyncSession, employer_id: int, announcement_id: int) -> None:
    found = (await session.execute(query("announcement_exists"), {"id": announcement_id, "e": employer_id})).first()
    if found is None:
        raise NotFoundError("No such announcement.")


async def deliveries_page(
    session: AsyncSession,
    employer_id: int,
    announcement_id: int,
    *,
    status: str | None,
    q: str | None,
    acknowledged: bool | None,
    after_id: int | None,
    limit: int,
) -> list[contracts.Delivery]:
    """Newest first, limit+1 rows. `q` matches the employee's name (case-insensitive) or, when it looks like a
    phone number, the phone's digits."""
    await ensure_exists(session, employer_id, announcement_id)
    needle = (q or "").strip()
    # Only a needle that looks like a phone (digits, +, spaces, dashes) searches phones: "worker 2" must not
    # match every phone containing a 2.
    looks_like_phone = bool(needle) and all(c.isdigit() or c in "+ -()" for c in needle)
    digits = "".join(c for c in needle if c.isdigit()) if looks_like_phone else ""
    rows = (
        await session.execute(
            query("delivery_page"),
            {
                "a": announcement_id,
                "e": employer_id,
                "status": status,
                "ack": acknowledged,
                "needle": needle,
                "pattern": "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
                "digits": digits,
                "phone_pattern": f"%{digits}%",
                "after": after_id,
                "limit": limit + 1,
            },
        )
    ).all()
    return [
        contracts.Delivery(
            id=r.id,
            employee_id=r.employee_id,
            employee_name=r.name,
            phone=mask_phone(r.phone),
            status=r.status,
            attempts=r.attempts,
            error=None
            if r.error_code is None and r.error_title is None
            else contracts.DeliveryError(code=r.error_code, title=r.error_title),
            skip_reason=r.skip_reason,
            sent_at=r.sent_at,
            delivered_at=r.delivered_at,
            read_at=r.read_at,
            acknowledged_at=r.acknowledged_at,
        )
        for r in rows
    ]
