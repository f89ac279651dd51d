"""HTTP endpoints for announcements (docs/api.md#announcements)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.announcements import idempotency, service
from bot.auth import Principal
from bot.errors import ProblemOperation, problems
from bot.ledger.cancel import cancel
from bot.ledger.resend import resend_unknown
from bot.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, known_id, next_cursor
from bot.state import AppState
from bot.templates.service import Lookup

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, QueryParameter(required=False, description="`next_cursor` of the previous page")]

CREATE_DESCRIPTION = """\
Schedules an announcement; the dispatcher sends it to every employee in the audience at `send_time`
(the audience is frozen then: opted-out and inactive employees are recorded as `skipped`).

* `message`: 1–4096 characters after trimming (stored trimmed).
* `send_time`: ISO 8601 with a UTC offset (`2026-12-01T09:00:00+02:00` or `…Z`); a naive time is a 422;
  absent, null or in the past means now.
* `audience`: exactly one of `{"all": true}`, `{"tags": [...]}` (any of the tags), `{"employee_ids": [...]}`
  (every id must be one of your employees, else 422 listing the unknown ones); absent means all.

**Idempotency-Key** (optional header, 1–255 visible ASCII characters, per
draft-ietf-httpapi-idempotency-key-header with Stripe's storage rules). Keys are scoped to your employer
and kept at least 24 hours. The request is identified by the SHA-256 of its canonical JSON body
(whitespace and key order do not matter).
* First use: processed; the status and exact response body are stored in the same transaction that creates
  the announcement.
* Same key, same body, after completion: the stored status and body again, byte for byte, with the header
  `Idempotent-Replayed: true`. No second announcement is ever created.
* Same key, different body: 422.
* Same key while the first request is still running: 409 with `Retry-After`. A request that died mid-flight
  releases the key after 60 seconds.
* Failed validation (422) is not stored (as Stripe does for requests that never started executing): the key
  is released, so the corrected request may reuse it.
"""

CREATE_EXAMPLES = [
    Example(
        summary="The proof of concept's body",
        value={"message": "Payday is moved to Friday.", "send_time": "2026-12-01T09:00:00+02:00"},
    ),
    Example(
        summary="To tagged employees, now",
        value={"message": "Forklift training at 14:00.", "audience": {"tags": ["warehouse"]}},
    ),
]


class AnnouncementController(Controller):
    path = "/announcements"
    tags = ["Announcements"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @post(
        "/",
        status_code=201,
        operation_id="CreateAnnouncement",
        summary="Schedule an announcement (Idempotency-Key supported)",
        description=CREATE_DESCRIPTION,
        responses={
            201: ResponseSpec(contracts.Announcement, description="The announcement (also when replayed)"),
            **problems(
                400,
                401,
                (409, "The same Idempotency-Key is still being processed (`Retry-After: 1`)"),
                413,
                (
                    422,
                    "Validation failed (`errors` names every invalid field), or the Idempotency-Key was used "
                    "with another body",
                ),
            ),
        },
        operation_class=ProblemOperation,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[contracts.AnnouncementIn, Body(examples=CREATE_EXAMPLES)],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="1–255 visible ASCII characters; retries with the same key never create twice",
            ),
        ] = None,
    ) -> Response[bytes]:
        lookup = Lookup(state.graph_http, state.settings)
        return await idempotency.create_once(
            request,
            db_session,
            principal.employer_id,
            idempotency_key,
            lambda: service.create(db_session, principal.employer_id, principal.token_id, data, lookup),
            status_code=201,
        )

    @get(
        "/",
        operation_id="ListAnnouncements",
        summary="List announcements, newest first, each with counts",
        responses=problems(
            401, (422, "A `limit` outside 1–500, a `cursor` this API did not return, or an unknown `status`")
        ),
        operation_class=ProblemOperation,
    )
    async def list_announcements(
        self,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        status: Annotated[contracts.AnnouncementStatus | None, QueryParameter(required=False)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> contracts.Page[contracts.Announcement]:
        items = await service.list_page(
            db_session, principal.employer_id, status=status, after_id=decode_cursor(cursor), limit=limit
        )
        return contracts.Page(items=items[:limit], next_cursor=next_cursor([a.id for a in items], limit))

    @get(
        "/{announcement_id:int}",
        operation_id="GetAnnouncement",
        summary="One announcement with its delivery counts",
        description="`counts` come from the ledger: each delivery once under its current status (they add up "
        "to `total`); `acknowledged` counts deliveries the employee acknowledged.",
        responses=problems(401, 404),
        operation_class=ProblemOperation,
    )
    async def get_announcement(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Announcement:
        known_id(announcement_id, "announcement")
        return await service.get(db_session, principal.employer_id, announcement_id)

    @get(
        "/{announcement_id:int}/deliveries",
        operation_id="ListDeliveries",
        summary="The announcement's deliveries, newest first",
        description="Phones are masked. `q` matches the employee's name or phone digits; `acknowledged` filters "
        "on whether the employee acknowledged.",
        responses=problems(401, 404, (422, "A bad `limit`, `cursor`, `status` or `acknowledged`")),
        operation_class=ProblemOperation,
    )
    async def list_deliveries(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        status: Annotated[contracts.DeliveryStatus | None, QueryParameter(required=False)] = None,
        q: Annotated[str | None, QueryParameter(required=False, max_length=200)] = None,
        acknowledged: Annotated[bool | None, QueryParameter(required=False)] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> contracts.Page[contracts.Delivery]:
        known_id(announcement_id, "announcement")
        items = await service.deliveries_page(
            db_session,
            principal.employer_id,
            announcement_id,
            status=status,
            q=q,
            acknowledged=acknowledged,
            after_id=decode_cursor(cursor),
            limit=limit,
        )
        return contracts.Page(items=items[:limit], next_cursor=next_cursor([d.id for d in items], limit))

    @get(
        "/{announcement_id:int}/timeline",
        operation_id="GetAnnouncementTimeline",
        summary="How the announcement's sends, deliveries, reads and acknowledgements arrived over time",
        description="One point per minute or hour (`bucket`) in which something happened, oldest first; `at` is the "
        "start of the bucket, counted in the employer's timezone. Each count is of deliveries whose `sent_at`, "
        "`delivered_at`, `read_at` or `acknowledged_at` falls in the bucket.",
        responses=problems(401, 404, (422, "A `bucket` other than `minute` or `hour`")),
        operation_class=ProblemOperation,
    )
    async def timeline(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
        bucket: Annotated[contracts.TimelineBucket, QueryParameter(required=False)] = "minute",
    ) -> contracts.Timeline:
        known_id(announcement_id, "announcement")
        return await service.timeline(db_session, principal.employer_id, announcement_id, bucket)

    @patch(
        "/{announcement_id:int}",
        operation_id="UpdateAnnouncement",
        summary="Change a scheduled announcement",
        description="`message`, `send_time`, `audience` with the same rules as creating. Only while `scheduled`; "
        "once the dispatcher has started it (or it is cancelled) the answer is 409.",
        responses=problems(400, 401, 404, (409, "The announcement is no longer `scheduled`"), 413, 422),
        operation_class=ProblemOperation,
    )
    async def update_announcement(
        self,
        announcement_id: FromPath[int],
        data: JSONBody[contracts.AnnouncementPatch],
        state: AppState,
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Announcement:
        known_id(announcement_id, "announcement")
        updated = await service.patch(
            db_session, principal.employer_id, announcement_id, data, Lookup(state.graph_http, state.settings)
        )
        await db_session.commit()
        return updated

    @post(
        "/{announcement_id:int}/cancel",
        status_code=200,
        operation_id="CancelAnnouncement",
        summary="Cancel an announcement",
        description="`scheduled` → `cancelled`. `dispatching` → `cancelled`, and its `pending` deliveries become "
        "`cancelled`; what is being sent or was sent stays as it is. `completed` or `cancelled` → 409.",
        responses=problems(401, 404, (409, "The announcement is already `completed` or `cancelled`")),
        operation_class=ProblemOperation,
    )
    async def cancel_announcement(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.Announcement:
        known_id(announcement_id, "announcement")
        await cancel(db_session, principal.employer_id, announcement_id)
        await db_session.commit()
        return await service.get(db_session, principal.employer_id, announcement_id)

    @post(
        "/{announcement_id:int}/resend-unknown",
        status_code=200,
        operation_id="ResendUnknown",
        summary="Resend the deliveries whose outcome is unknown",
        description="The operator's explicit decision to accept the risk of a duplicate: deliveries in `unknown` "
        "are queued again and the request is recorded with the token and time. A completed announcement goes "
        "back to `dispatching`. 409 when the announcement is cancelled; `resent` is 0 when nothing was unknown.",
        responses=problems(401, 404, (409, "The announcement is cancelled")),
        operation_class=ProblemOperation,
    )
    async def resend(
        self,
        announcement_id: FromPath[int],
        principal: NamedDependency[Principal],
        db_session: NamedDependency[AsyncSession],
    ) -> contracts.ResendResult:
        known_id(announcement_id, "announcement")
        resent, requested_at = await resend_unknown(
            db_session, principal.employer_id, announcement_id, principal.token_id
        )
        await db_session.commit()
        return contracts.ResendResult(announcement_id=announcement_id, resent=resent, requested_at=requested_at)
