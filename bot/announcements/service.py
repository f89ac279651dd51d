"""Announcements: validation, create, read (with ledger counts), list, patch, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.announcements import durations
from bot.contracts import MAX_MESSAGE_LENGTH, FieldError
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError
from bot.ledger import reminders
from bot.ledger.counts import counts_for
from bot.pagination import MAX_ID
from bot.phones import mask_phone
from bot.templates.catalogue import MEDIA_HEADERS, Template, choose
from bot.templates.render import MAX_PARAMETER_LENGTH, flatten, preview
from bot.templates.service import Lookup


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


async def _content(
    session: AsyncSession,
    employer_id: int,
    message: str | None,
    template: contracts.TemplateUse | None,
    lookup: Lookup | None,
    errors: list[FieldError],
) -> tuple[str, dict[str, Any] | None]:
    """(the text, or the template's preview; the template as stored) from exactly one of message and template."""
    if (message is None) == (template is None):
        errors.append(FieldError(field="message", message="give either message (text) or template, not both"
                                 if message is not None else "is required (or give a template)"))  # fmt: skip
        return "", None
    if message is not None:
        return _message(message, errors), None
    assert template is not None
    if lookup is None:  # pragma: no cover - every caller that can receive a template passes one
        raise RuntimeError("a template announcement needs the template catalogue")
    return await _template(session, employer_id, template, lookup, errors)


async def _template(
    session: AsyncSession, employer_id: int, use: contracts.TemplateUse, lookup: Lookup, errors: list[FieldError]
) -> tuple[str, dict[str, Any] | None]:
    """Check the template against the catalogue and Meta's rules for parameters (docs/whatsapp.md#message-templates);
    returns its preview and what is stored: the parameters as they will be sent (whitespace collapsed)."""
    found = await lookup.translations(session, employer_id, use.name)
    approved = [t for t in found if t.approved]
    if not approved:
        statuses = ", ".join(sorted({t.status for t in found}))
        missing = "is not in the catalogue (GET /templates lists them; POST /templates/sync reads them again)"
        why = f"is not approved (status {statuses})" if found else missing
        errors.append(FieldError(field="template.name", message=f"{use.name!r} {why}"))
        return "", None
    language = (await session.execute(query("employer_language"), {"e": employer_id})).scalar()
    reference = choose(approved, language)
    assert reference is not None
    shapes = {(t.body_parameters, t.header_format, t.header_parameters) for t in approved}
    if len(shapes) > 1:
        differ = ", ".join(
            f"{t.language}: {t.body_parameters} parameter(s), header {t.header_format}" for t in approved
        )
        errors.append(FieldError(field="template.name", message=f"its translations differ ({differ}); make them "
                                 "alike in WhatsApp Manager"))  # fmt: skip
    params = [flatten(p) for p in use.parameters]
    if len(params) != reference.body_parameters:
        errors.append(FieldError(field="template.parameters",
                                 message=f"{use.name!r} takes {reference.body_parameters} body parameter(s), "
                                 f"got {len(params)}"))  # fmt: skip
    for i, p in enumerate(params):
        if not p:
            errors.append(FieldError(field=f"template.parameters[{i}]", message="must not be empty"))
        elif len(p) > MAX_PARAMETER_LENGTH:
            errors.append(FieldError(field=f"template.parameters[{i}]",
                                     message=f"is {len(p)} characters after whitespace is collapsed; WhatsApp takes "
                                     f"at most {MAX_PARAMETER_LENGTH}"))  # fmt: skip
    header = _header(reference, use.header, errors)
    stored: dict[str, Any] = {"name": use.name, "parameters": params}
    if header:
        stored["header"] = header
    return preview(reference, params, header), stored


def _header(t: Template, given: contracts.TemplateHeader | None, errors: list[FieldError]) -> dict[str, str] | None:
    """The header the template needs, of the kind it needs: media (link or media_id), text, or none."""
    header = {k: v for k, v in msgspec.structs.asdict(given).items() if v is not None} if given is not None else {}
    if t.header_format in MEDIA_HEADERS:
        media = [k for k in ("link", "media_id") if k in header]
        if len(media) != 1 or "text" in header:
            need = "give exactly one of link (https://…) or media_id (from POST /media)"
            errors.append(
                FieldError(field="template.header", message=f"{t.name!r} has a {t.header_format} header: {need}")
            )
        elif "link" in header and not header["link"].startswith("https://"):
            errors.append(FieldError(field="template.header.link", message="must be an https:// URL"))
        if "filename" in header and t.header_format != "document":
            errors.append(FieldError(field="template.header.filename", message="only a document header has one"))
        return header
    if t.header_parameters:
        if set(header) != {"text"} or not flatten(header["text"]):
            errors.append(FieldError(field="template.header", message=f"{t.name!r} has a text header with a "
                                     "variable: give {\"text\": …}"))  # fmt: skip
        return {"text": flatten(header.get("text", ""))}
    if header:
        kind = "no header" if t.header_format == "none" else "a fixed text header"
        errors.append(FieldError(field="template.header", message=f"{t.name!r} has {kind}: leave header out"))
    return None


def _to_contract(row: Any, counts: contracts.Counts) -> contracts.Announcement:
    return contracts.Announcement(
        id=row.id,
        message=row.message,
        preview=row.message,
        template=None if row.template is None else msgspec.convert(row.template, contracts.TemplateUse),
        send_time=row.send_at,
        status=row.status,
        audience=msgspec.convert(row.audience, contracts.Audience),
        created_at=row.created_at,
        dispatched_at=row.dispatched_at,
        completed_at=row.completed_at,
        cancelled_at=row.cancelled_at,
        counts=counts,
        reminder_of=row.reminder_of,
        remind_after=None if row.remind_after_seconds is None else durations.format_seconds(row.remind_after_seconds),
    )


async def create(
    session: AsyncSession,
    employer_id: int,
    token_id: int | None,
    data: contracts.AnnouncementIn,
    lookup: Lookup | None = None,
) -> contracts.Announcement:
    """Insert the announcement as `scheduled` (the dispatcher fans it out at send time). Does not commit.

    ``lookup`` finds templates (a template announcement is checked against the catalogue)."""
    errors: list[FieldError] = []
    message, template = await _content(session, employer_id, data.message, data.template, lookup, errors)
    send_at = _send_at(data.send_time, errors)
    audience = await _audience(session, employer_id, data.audience, errors)
    remind_after = None if data.remind_after is None else durations.parse_seconds(data.remind_after, errors)
    if errors:
        raise ValidationFailedError.many(errors)
    params = {
        "e": employer_id,
        "m": message,
        "s": send_at,
        "a": msgspec.json.encode(audience).decode(),
        "t": token_id,
        "tpl": None if template is None else msgspec.json.encode(template).decode(),
        "ra": remind_after,
    }
    row = (await session.execute(query("announcement_insert"), params)).one()
    if row.send_at <= datetime.now(UTC):
        await session.execute(query("wake_dispatchers"))
    return _to_contract(row, contracts.Counts())


async def get(session: AsyncSession, employer_id: int, announcement_id: int) -> contracts.Announcement:
    row = (await session.execute(query("announcement_get"), {"id": announcement_id, "e": employer_id})).one_or_none()
    if row is None:
        raise NotFoundError("No such announcement.")
    counts = await counts_for(session, [row.id])
    shown = _to_contract(row, counts[row.id])
    languages = (await session.execute(query("announcement_languages"), {"id": row.id})).all()
    failures = (await session.execute(query("announcement_failures"), {"id": row.id})).all()
    shown.languages = {r.language: r.n for r in languages}
    shown.failures = [contracts.FailureCount(code=r.error_code, title=r.error_title, count=r.n) for r in failures]
    shown.reminders = await reminders.summaries(session, employer_id, row.id)
    return shown


async def list_page(
    session: AsyncSession, employer_id: int, *, status: str | None, after_id: int | None, limit: int
) -> list[contracts.Announcement]:
    """Newest first; fetches limit+1 rows so the caller can tell whether another page exists."""
    params = {"e": employer_id, "status": status, "after": after_id, "n": limit + 1}
    rows = (await session.execute(query("announcement_page"), params)).all()
    counts = await counts_for(session, [r.id for r in rows[:limit]])
    return [_to_contract(r, counts.get(r.id, contracts.Counts())) for r in rows]


async def patch(
    session: AsyncSession,
    employer_id: int,
    announcement_id: int,
    data: contracts.AnnouncementPatch,
    lookup: Lookup | None = None,
) -> contracts.Announcement:
    """Change a `scheduled` announcement. The conditional UPDATE cannot race with fan-out: once the
    dispatcher has moved it to `dispatching`, no row matches and the answer is 409. Does not commit."""
    errors: list[FieldError] = []
    params: dict[str, Any] = {
        "id": announcement_id,
        "e": employer_id,
        "set_message": False,
        "m": None,
        "tpl": None,
        "set_send_at": False,
        "s": None,
        "set_audience": False,
        "a": None,
    }
    message = None if isinstance(data.message, msgspec.UnsetType) else data.message
    template = None if isinstance(data.template, msgspec.UnsetType) else data.template
    if message is not None or template is not None:
        # The content is replaced as a whole: text replaces a template, and a template replaces text.
        text, stored = await _content(session, employer_id, message, template, lookup, errors)
        params |= {
            "set_message": True,
            "m": text,
            "tpl": None if stored is None else msgspec.json.encode(stored).decode(),
        }
    if not isinstance(data.send_time, msgspec.UnsetType):
        params |= {"set_send_at": True, "s": _send_at(data.send_time, errors)}
    if not isinstance(data.audience, msgspec.UnsetType):
        ours = {"id": announcement_id, "e": employer_id}
        current_row = (await session.execute(query("announcement_get"), ours)).first()
        if current_row is not None and current_row.reminder_of is not None:
            why = "cannot be chosen for a reminder: it is whoever the original reached and has not acknowledged"
            errors.append(FieldError(field="audience", message=why))
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
            language=r.language,
            message_status=r.message_status,
        )
        for r in rows
    ]


async def timeline(
    session: AsyncSession, employer_id: int, announcement_id: int, bucket: contracts.TimelineBucket
) -> contracts.Timeline:
    """Sent, delivered, read and acknowledged per bucket, oldest first; 404 when the announcement is not ours."""
    await ensure_exists(session, employer_id, announcement_id)
    params = {"a": announcement_id, "e": employer_id, "bucket": bucket}
    rows = (await session.execute(query("announcement_timeline"), params)).mappings().all()
    return contracts.Timeline(bucket=bucket, points=[contracts.TimelinePoint(**dict(r)) for r in rows])
