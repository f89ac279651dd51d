"""HTTP endpoints for employees (docs/api.md#employees)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.employees import erasure, service
from bot.errors import ProblemOperation, problems
from bot.optouts import PhoneHasher
from bot.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, next_cursor
from bot.state import AppState


class ImportBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The import body as received: rows stay untyped here so that the service can report every bad row by
    index (a typed list would stop at the first bad row, and a non-object row would hide all the others)."""

    employees: Annotated[
        list[Any],
        msgspec.Meta(description="up to 10,000 rows, each like the body of POST /employees (phone, name, tags)"),
    ]


Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]


class EmployeeController(Controller):
    path = "/employees"
    tags = ["Employees"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @post(
        "/",
        operation_id="UpsertEmployee",
        summary="Create an employee, or update the one with this phone",
        description="Phones are normalised to E.164. Answers 201 when created, 200 when an employee with the "
        "same phone existed (it is updated and reactivated; an opt-out is never undone here). Only the fields in "
        "the body change: one left out keeps its value. A new employee needs a `name`; its `tags` default to none.",
        responses={
            200: ResponseSpec(contracts.Employee, description="Updated: an employee with this phone existed"),
            **problems(400, 401, 413, 422),
        },
        operation_class=ProblemOperation,
    )
    async def create(
        self,
        data: JSONBody[contracts.EmployeeIn],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[contracts.Employee]:
        hasher = PhoneHasher.from_secret(state.settings.secret_key)
        employee, created = await service.upsert(db_session, principal.employer_id, data, hasher=hasher)
        await db_session.commit()
        return Response(employee, status_code=201 if created else 200)

    @post(
        "/import",
        status_code=200,
        operation_id="ImportEmployees",
        summary="Upsert up to 10,000 employees, all or nothing",
        description="Every row is validated first; if any is invalid the answer is 422 listing each bad row "
        "by index (`employees[3].phone`) and nothing is written. Each row changes only the fields it sends, as "
        "`POST /employees` does; a row for a new phone needs a `name`.",
        responses=problems(400, 401, 413, 422),
        operation_class=ProblemOperation,
    )
    async def import_employees(
        self,
        data: JSONBody[ImportBody],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.ImportResult:
        hasher = PhoneHasher.from_secret(state.settings.secret_key)
        result = await service.import_all(db_session, principal.employer_id, data.employees, hasher=hasher)
        await db_session.commit()
        return result

    @get(
        "/",
        operation_id="ListEmployees",
        summary="List employees, newest first",
        description="`tag` may repeat (any of them matches); `q` searches name and phone; `total` counts every "
        "match so a client can preview an audience.",
        responses=problems(401, (422, "A `limit` outside 1–500 or a `cursor` this API did not return")),
        operation_class=ProblemOperation,
    )
    async def list_employees(
        self,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        tag: Annotated[list[str] | None, QueryParameter(required=False)] = None,
        q: Annotated[str | None, QueryParameter(required=False, max_length=200)] = None,
        include_inactive: Annotated[bool, QueryParameter(description="include deactivated employees")] = False,
        opted_out: Annotated[bool | None, QueryParameter(required=False)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Annotated[str | None, QueryParameter(required=False)] = None,
    ) -> contracts.TotalPage[contracts.Employee]:
        items, total = await service.list_page(
            db_session,
            principal.employer_id,
            tags=tag,
            q=q,
            include_inactive=include_inactive,
            opted_out=opted_out,
            after_id=decode_cursor(cursor),
            limit=limit,
        )
        return contracts.TotalPage(
            items=items[:limit], next_cursor=next_cursor([e.id for e in items], limit), total=total
        )

    @get(
        "/{employee_id:int}",
        operation_id="GetEmployee",
        summary="One employee",
        responses=problems(401, 404),
        operation_class=ProblemOperation,
    )
    async def get_employee(
        self,
        employee_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Employee:
        return await service.get(db_session, principal.employer_id, employee_id)

    @patch(
        "/{employee_id:int}",
        operation_id="UpdateEmployee",
        summary="Change some of an employee's fields",
        description="Only the fields in the body change. A phone another employee of the employer has is a 409.",
        responses=problems(
            400, 401, 404, (409, "Another employee of this employer already has that phone number"), 413, 422
        ),
        operation_class=ProblemOperation,
    )
    async def update_employee(
        self,
        employee_id: FromPath[int],
        data: JSONBody[contracts.EmployeePatch],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Employee:
        hasher = PhoneHasher.from_secret(state.settings.secret_key)
        employee = await service.patch(db_session, principal.employer_id, employee_id, data, hasher=hasher)
        await db_session.commit()
        return employee

    @delete(
        "/{employee_id:int}",
        status_code=200,
        operation_id="DeactivateEmployee",
        summary="Deactivate an employee, or erase their personal data",
        description="Without `erase` (or `erase=false`): the employee stops receiving announcements; their "
        "delivery history is kept (204). With `erase=true` (POPIA/GDPR): their name, number, tags, language, "
        "message texts and the raw webhook events about them are removed, and nothing waiting for them is sent; "
        "their ledger rows stay anonymised, so every announcement's counts are unchanged, and an opt-out survives "
        "as a keyed hash of the number (200). An erased employee is not found from then on (erasing again: 404).",
        responses={
            200: ResponseSpec(contracts.Erased, description="Erased (`erase=true`)"),
            204: ResponseSpec(None, description="Deactivated"),
            **problems(
                401,
                404,
                (409, "The employee opted out and the server has no JEM_SECRET_KEY to keep that opt-out with"),
                (422, "`erase` is not true or false"),
            ),
        },
        operation_class=ProblemOperation,
    )
    async def deactivate_employee(
        self,
        employee_id: FromPath[int],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        erase: Annotated[
            bool, QueryParameter(description="true: erase the employee's personal data instead of deactivating")
        ] = False,
    ) -> Response[contracts.Erased | None]:
        if not erase:
            await service.deactivate(db_session, principal.employer_id, employee_id)
            await db_session.commit()
            return Response(None, status_code=204)
        hasher = PhoneHasher.from_secret(state.settings.secret_key)
        erased_at = await erasure.erase(db_session, hasher, principal.employer_id, employee_id)
        await db_session.commit()
        return Response(contracts.Erased(id=employee_id, erased_at=erased_at), status_code=200)
