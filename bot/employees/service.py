"""Employees: upsert by phone within an employer, all-or-nothing import, filtered listing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError, from_msgspec_error
from bot.optouts import PhoneHasher, restore
from bot.pagination import MAX_ID
from bot.phones import InvalidPhoneError, normalise_phone
from bot.templates.catalogue import normalise_language

NAME_REQUIRED = "is required for a new employee (none has this phone yet)"
# Import errors name their row first: `employees[3].phone`.
_ROW_INDEX = re.compile(r"employees\[(\d+)\]")
# Meta's language codes: two or three letters, optionally a region (en_US, pt_BR, zh_CN).
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2,4})?")


def to_contract(row: Any) -> contracts.Employee:
    return contracts.Employee(
        id=row.id,
        phone=row.phone,
        name=row.name,
        tags=list(row.tags),
        active=row.active,
        opted_out=row.opted_out_at is not None,
        opted_out_at=row.opted_out_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        bsuid_known=bool(getattr(row, "bsuid_known", False)),
        language=getattr(row, "language", None),
    )


def _clean_tags(tags: Sequence[str]) -> list[str]:
    # Tags compare case-insensitively in practice ("Warehouse" vs "warehouse"); store them folded.
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(tag.strip().lower(), None)
    return [t for t in seen if t]


def _phone(raw: str, field: str) -> str:
    try:
        return normalise_phone(raw)
    except InvalidPhoneError as exc:
        raise ValidationFailedError.one(field, str(exc)) from None


def language(raw: str | None, field: str) -> str | None:
    """A WhatsApp language code in Meta's form (`en`, `af`, `en_US`), or None; a 422 naming ``field`` otherwise."""
    if raw is None:
        return None
    code = normalise_language(raw)
    if not _LANGUAGE.fullmatch(code):
        raise ValidationFailedError.one(field, 'must be a language code like "en", "af", "zu" or "en_US"')
    return code


async def _upsert_rows(
    session: AsyncSession,
    employer_id: int,
    rows: list[dict[str, object]],
    languages: dict[str, str | None],
    name_field: Callable[[str], str],
    hasher: PhoneHasher | None,
) -> list[tuple[int, bool]]:
    """Rows hold only the fields sent (see employee_upsert): one without `name` or `tags` keeps the employee's.
    ``languages``: phone → language for the rows that sent one (the others keep theirs).

    Callers refuse up front a row without a name for a phone no employee has (so the 422 lists it with the other
    errors); should such a row create an employee all the same (one was deleted since), it is refused here, a 422
    naming ``name_field(phone)`` after an insert only this transaction sees and that the caller does not commit.
    """
    # Opt-out is the employee's own choice (STOP), so an upsert never touches opted_out_at.
    result = await session.execute(query("employee_upsert"), {"employer_id": employer_id, "rows": json.dumps(rows)})
    upserted = result.all()
    unnamed = {r.phone for r in upserted if r.created and r.unnamed}
    if unnamed:
        phones = [str(row["phone"]) for row in rows if row["phone"] in unnamed]  # in the order they were sent
        raise ValidationFailedError.many(
            [contracts.FieldError(field=name_field(p), message=NAME_REQUIRED) for p in phones]
        )
    untagged = [r.id for r in upserted if r.created and r.untagged]
    if untagged:
        await session.execute(query("employee_untagged"), {"ids": untagged})
    found = [(r.id, r.created) for r in upserted]
    if languages:
        params = {"e": employer_id, "phones": list(languages), "languages": list(languages.values())}
        await session.execute(query("employee_languages"), params)
    # A number someone erased had opted out of comes back opted out: nobody who said STOP is messaged again.
    await restore(session, hasher, employer_id, [r.phone for r in upserted])
    return found


def _row_of(error: contracts.FieldError) -> int:
    found = _ROW_INDEX.match(error.field)
    return int(found.group(1)) if found else -1


async def _new_phones(session: AsyncSession, employer_id: int, phones: list[str]) -> set[str]:
    """Which of these phones no employee of the employer has: a row for one of them must send a name."""
    known = await session.execute(query("employee_phones_known"), {"e": employer_id, "phones": phones})
    return set(phones) - set(known.scalars())


def _row(phone: str, data: contracts.EmployeeIn) -> dict[str, object]:
    """The upsert row: the phone, and only the fields the client sent (the others are kept)."""
    row: dict[str, object] = {"phone": phone}
    if not isinstance(data.name, msgspec.UnsetType):
        row["name"] = data.name.strip()
    if not isinstance(data.tags, msgspec.UnsetType):
        row["tags"] = _clean_tags(data.tags)
    return row


async def upsert(
    session: AsyncSession, employer_id: int, data: contracts.EmployeeIn, *, hasher: PhoneHasher | None
) -> tuple[contracts.Employee, bool]:
    # Report every invalid field at once, not just the first.
    errors: list[contracts.FieldError] = []
    phone = ""
    try:
        phone = normalise_phone(data.phone)
    except InvalidPhoneError as exc:
        errors.append(contracts.FieldError(field="phone", message=str(exc)))
    if not isinstance(data.name, msgspec.UnsetType) and not data.name.strip():
        errors.append(contracts.FieldError(field="name", message="must not be blank"))
    if isinstance(data.name, msgspec.UnsetType) and phone and await _new_phones(session, employer_id, [phone]):
        errors.append(contracts.FieldError(field="name", message=NAME_REQUIRED))
    languages: dict[str, str | None] = {}
    if not isinstance(data.language, msgspec.UnsetType):
        try:
            languages[phone] = language(data.language, "language")
        except ValidationFailedError as exc:
            errors += exc.errors or []
    if errors:
        raise ValidationFailedError.many(errors)
    row = _row(phone, data)
    [(employee_id, created)] = await _upsert_rows(session, employer_id, [row], languages, lambda _: "name", hasher)
    return await get(session, employer_id, employee_id), created


async def import_all(
    session: AsyncSession, employer_id: int, raw_rows: Sequence[object], *, hasher: PhoneHasher | None
) -> contracts.ImportResult:
    if len(raw_rows) > contracts.MAX_IMPORT_ROWS:
        raise ValidationFailedError.one("employees", f"at most {contracts.MAX_IMPORT_ROWS} rows per import")
    errors: list[contracts.FieldError] = []
    rows: list[dict[str, object]] = []
    languages: dict[str, str | None] = {}
    first_index: dict[str, int] = {}
    nameless: list[str] = []
    for index, raw in enumerate(raw_rows):
        where = f"employees[{index}]"
        try:
            item = msgspec.convert(raw, contracts.EmployeeIn)
        except msgspec.ValidationError as exc:
            errors.append(from_msgspec_error(exc, where))
            continue
        try:
            phone = normalise_phone(item.phone)
        except InvalidPhoneError as exc:
            errors.append(contracts.FieldError(field=f"{where}.phone", message=str(exc)))
            continue
        if not isinstance(item.name, msgspec.UnsetType) and not item.name.strip():
            errors.append(contracts.FieldError(field=f"{where}.name", message="must not be blank"))
            continue
        if phone in first_index:
            errors.append(
                contracts.FieldError(
                    field=f"{where}.phone", message=f"duplicates the phone of employees[{first_index[phone]}]"
                )
            )
            continue
        if not isinstance(item.language, msgspec.UnsetType):
            try:
                languages[phone] = language(item.language, f"{where}.language")
            except ValidationFailedError as exc:
                errors += exc.errors or []
                continue
        first_index[phone] = index
        rows.append(_row(phone, item))
        if isinstance(item.name, msgspec.UnsetType):
            nameless.append(phone)
    if nameless:
        for phone in await _new_phones(session, employer_id, nameless):
            errors.append(contracts.FieldError(field=f"employees[{first_index[phone]}].name", message=NAME_REQUIRED))
        errors.sort(key=_row_of)  # the rows in order, as the other errors are
    if errors:
        raise ValidationFailedError.many(errors)

    def name_field(phone: str) -> str:
        return f"employees[{first_index[phone]}].name"

    results = await _upsert_rows(session, employer_id, rows, languages, name_field, hasher) if rows else []
    created = sum(1 for _, was_created in results if was_created)
    return contracts.ImportResult(created=created, updated=len(results) - created)


def _in_range(employee_id: int) -> None:
    # An id PostgreSQL's bigint cannot hold names no employee (and would make the query fail with a 500).
    if not 0 < employee_id <= MAX_ID:
        raise NotFoundError(f"employee {employee_id} not found")


async def get(session: AsyncSession, employer_id: int, employee_id: int) -> contracts.Employee:
    _in_range(employee_id)
    row = (await session.execute(query("employee_get"), {"id": employee_id, "e": employer_id})).first()
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    return to_contract(row)


async def list_page(
    session: AsyncSession,
    employer_id: int,
    *,
    tags: list[str] | None,
    q: str | None,
    include_inactive: bool,
    opted_out: bool | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[contracts.Employee], int]:
    needle = None
    if q and q.strip():
        escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        needle = f"%{escaped}%"
    filters: dict[str, Any] = {
        "e": employer_id,
        # `?tag=` (an empty filter field) means no tag filter, not "employees without tags".
        "tags": _clean_tags(tags or []) or None,
        "needle": needle,
        "phone_needle": needle.replace(" ", "") if needle else None,
        "include_inactive": include_inactive,
        "opted_out": opted_out,
    }
    total = (await session.execute(query("employee_count"), filters)).scalar_one()
    rows = (await session.execute(query("employee_page"), filters | {"after": after_id, "n": limit + 1})).all()
    return [to_contract(r) for r in rows], int(total)


async def patch(
    session: AsyncSession,
    employer_id: int,
    employee_id: int,
    data: contracts.EmployeePatch,
    *,
    hasher: PhoneHasher | None,
) -> contracts.Employee:
    _in_range(employee_id)
    params: dict[str, Any] = {
        "id": employee_id,
        "e": employer_id,
        "set_phone": False,
        "phone": None,
        "set_name": False,
        "name": None,
        "set_tags": False,
        "tags": None,
        "set_active": False,
        "active": None,
        "set_language": False,
        "language": None,
    }
    if not isinstance(data.phone, msgspec.UnsetType):
        params |= {"set_phone": True, "phone": _phone(data.phone, "phone")}
    if not isinstance(data.name, msgspec.UnsetType):
        if not data.name.strip():
            raise ValidationFailedError.one("name", "must not be blank")
        params |= {"set_name": True, "name": data.name.strip()}
    if not isinstance(data.tags, msgspec.UnsetType):
        params |= {"set_tags": True, "tags": _clean_tags(data.tags)}
    if not isinstance(data.active, msgspec.UnsetType):
        params |= {"set_active": True, "active": data.active}
    if not isinstance(data.language, msgspec.UnsetType):
        params |= {"set_language": True, "language": language(data.language, "language")}
    try:
        async with session.begin_nested():
            row = (await session.execute(query("employee_patch"), params)).first()
    except IntegrityError:
        raise ConflictError("another employee of this employer already has that phone number") from None
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    if params["set_phone"] and hasher is not None:
        # A number someone erased had opted out of: this employee comes back opted out (bot/optouts.py).
        await restore(session, hasher, employer_id, [params["phone"]])
        return await get(session, employer_id, employee_id)
    return to_contract(row)


async def deactivate(session: AsyncSession, employer_id: int, employee_id: int) -> None:
    await get(session, employer_id, employee_id)  # 404 when it is not ours
    await session.execute(query("employee_deactivate"), {"id": employee_id, "e": employer_id})
