"""Employees: upsert by phone within an employer, all-or-nothing import, filtered listing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.db.queries import query
from bot.errors import ConflictError, NotFoundError, ValidationFailedError, from_msgspec_error
from bot.pagination import MAX_ID
from bot.phones import InvalidPhoneError, normalise_phone


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


async def _upsert_rows(
    session: AsyncSession, employer_id: int, rows: list[dict[str, object]]
) -> list[tuple[int, bool]]:
    # Opt-out is the employee's own choice (STOP), so an upsert never touches opted_out_at.
    result = await session.execute(query("employee_upsert"), {"employer_id": employer_id, "rows": json.dumps(rows)})
    return [(r.id, r.created) for r in result]


async def upsert(
    session: AsyncSession, employer_id: int, data: contracts.EmployeeIn
) -> tuple[contracts.Employee, bool]:
    # Report every invalid field at once, not just the first.
    errors: list[contracts.FieldError] = []
    phone = ""
    try:
        phone = normalise_phone(data.phone)
    except InvalidPhoneError as exc:
        errors.append(contracts.FieldError(field="phone", message=str(exc)))
    if not data.name.strip():
        errors.append(contracts.FieldError(field="name", message="must not be blank"))
    if errors:
        raise ValidationFailedError.many(errors)
    row: dict[str, object] = {"phone": phone, "name": data.name.strip(), "tags": _clean_tags(data.tags)}
    [(employee_id, created)] = await _upsert_rows(session, employer_id, [row])
    return await get(session, employer_id, employee_id), created


async def import_all(session: AsyncSession, employer_id: int, raw_rows: Sequence[object]) -> contracts.ImportResult:
    if len(raw_rows) > contracts.MAX_IMPORT_ROWS:
        raise ValidationFailedError.one("employees", f"at most {contracts.MAX_IMPORT_ROWS} rows per import")
    errors: list[contracts.FieldError] = []
    rows: list[dict[str, object]] = []
    first_index: dict[str, int] = {}
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
        if not item.name.strip():
            errors.append(contracts.FieldError(field=f"{where}.name", message="must not be blank"))
            continue
        if phone in first_index:
            errors.append(
                contracts.FieldError(
                    field=f"{where}.phone", message=f"duplicates the phone of employees[{first_index[phone]}]"
                )
            )
            continue
        first_index[phone] = index
        rows.append({"phone": phone, "name": item.name.strip(), "tags": _clean_tags(item.tags)})
    if errors:
        raise ValidationFailedError.many(errors)
    results = await _upsert_rows(session, employer_id, rows) if rows else []
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
    session: AsyncSession, employer_id: int, employee_id: int, data: contracts.EmployeePatch
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
    try:
        async with session.begin_nested():
            row = (await session.execute(query("employee_patch"), params)).first()
    except IntegrityError:
        raise ConflictError("another employee of this employer already has that phone number") from None
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    return to_contract(row)


async def deactivate(session: AsyncSession, employer_id: int, employee_id: int) -> None:
    await get(session, employer_id, employee_id)  # 404 when it is not ours
    await session.execute(query("employee_deactivate"), {"id": employee_id, "e": employer_id})
