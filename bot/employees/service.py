"""Employees: upsert by phone within an employer, all-or-nothing import, filtered listing."""

from __future__ import annotations

import json
from collections.abc import Sequence

import msgspec
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.db.models import Employee
from bot.errors import ConflictError, NotFoundError, ValidationFailedError, from_msgspec_error
from bot.pagination import MAX_ID
from bot.phones import InvalidPhoneError, normalise_phone


def to_contract(row: Employee) -> contracts.Employee:
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


_UPSERT = text(
    """
    INSERT INTO employee (employer_id, phone, name, tags)
    SELECT :employer_id, r.phone, r.name, ARRAY(SELECT jsonb_array_elements_text(r.tags))
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(phone text, name text, tags jsonb)
    -- One lock order for every import: two imports of overlapping rows in different orders would
    -- otherwise deadlock (each holding a row the other needs).
    ORDER BY r.phone
    ON CONFLICT (employer_id, phone) DO UPDATE
       SET name = excluded.name, tags = excluded.tags, active = true, deactivated_at = NULL, updated_at = now()
    RETURNING id, (xmax = 0) AS created
    """
)


async def _upsert_rows(
    session: AsyncSession, employer_id: int, rows: list[dict[str, object]]
) -> list[tuple[int, bool]]:
    # Opt-out is the employee's own choice (STOP), so an upsert never touches opted_out_at.
    result = await session.execute(_UPSERT, {"employer_id": employer_id, "rows": json.dumps(rows)})
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


async def _load(session: AsyncSession, employer_id: int, employee_id: int) -> Employee:
    # An id PostgreSQL's bigint cannot hold names no employee (and would make the query fail with a 500).
    if not 0 < employee_id <= MAX_ID:
        raise NotFoundError(f"employee {employee_id} not found")
    row = await session.scalar(select(Employee).where(Employee.id == employee_id, Employee.employer_id == employer_id))
    if row is None:
        raise NotFoundError(f"employee {employee_id} not found")
    return row


async def get(session: AsyncSession, employer_id: int, employee_id: int) -> contracts.Employee:
    return to_contract(await _load(session, employer_id, employee_id))


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
    conditions = [Employee.employer_id == employer_id]
    # `?tag=` (an empty filter field) means no tag filter, not "employees without tags".
    if wanted := _clean_tags(tags or []):
        conditions.append(Employee.tags.overlap(wanted))
    if q and q.strip():
        escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        needle = f"%{escaped}%"
        conditions.append(Employee.name.ilike(needle) | Employee.phone.like(needle.replace(" ", "")))
    if not include_inactive:
        conditions.append(Employee.active.is_(True))
    if opted_out is not None:
        conditions.append(Employee.opted_out_at.is_not(None) if opted_out else Employee.opted_out_at.is_(None))
    total = await session.scalar(select(func.count()).select_from(Employee).where(*conditions)) or 0
    page = select(Employee).where(*conditions)
    if after_id is not None:
        page = page.where(Employee.id < after_id)
    rows = (await session.scalars(page.order_by(Employee.id.desc()).limit(limit + 1))).all()
    return [to_contract(r) for r in rows], total


async def patch(
    session: AsyncSession, employer_id: int, employee_id: int, data: contracts.EmployeePatch
) -> contracts.Employee:
    row = await _load(session, employer_id, employee_id)
    values: dict[str, object] = {}
    if not isinstance(data.phone, msgspec.UnsetType):
        values["phone"] = _phone(data.phone, "phone")
    if not isinstance(data.name, msgspec.UnsetType):
        if not data.name.strip():
            raise ValidationFailedError.one("name", "must not be blank")
        values["name"] = data.name.strip()
    if not isinstance(data.tags, msgspec.UnsetType):
        values["tags"] = _clean_tags(data.tags)
    if not isinstance(data.active, msgspec.UnsetType):
        values["active"] = data.active
        values["deactivated_at"] = None if data.active else func.now()
    if values:
        values["updated_at"] = func.now()
        try:
            async with session.begin_nested():
                await session.execute(update(Employee).where(Employee.id == row.id).values(**values))
        except IntegrityError:
            raise ConflictError("another employee of this employer already has that phone number") from None
        await session.refresh(row)
    return to_contract(row)


async def deactivate(session: AsyncSession, employer_id: int, employee_id: int) -> None:
    row = await _load(session, employer_id, employee_id)
    await session.execute(
        update(Employee)
        .where(Employee.id == row.id, Employee.active.is_(True))
        .values(active=False, deactivated_at=func.now(), updated_at=func.now())
    )
