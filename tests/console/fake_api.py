"""An in-memory stand-in for BotApi with the service's semantics (docs/api.md), for Pilot tests.

It implements the same methods, the same validation (422 naming the field), the same idempotency rules
(same key + same body → the same announcement; same key + other body → 422) and the same cancel and
resend-unknown transitions. Lists are newest first and paginated with `limit`, `cursor` and `next_cursor` as
the API's keyset pages are. Faults are injected explicitly: `down` (every call unreachable), `unauthorized`
(every call 401), and `lose_next_create_response` (the server commits, then the answer is lost). What GET
/sender answers is `current_sender`: replace it to pause or back off the number, or set None for a server
older than /sender (404); `has_timeline = False` plays a server older than the timeline endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec

from bot import contracts
from console.api import ApiError, ApiUnreachable

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

T = TypeVar("T")


def keyset_page(
    rows: Sequence[T], ident: Callable[[T], int], cursor: str | None, limit: int
) -> tuple[list[T], str | None]:
    """`rows` (newest first) after `cursor`, `limit` of them, and the next page's cursor, as the API pages."""
    if not 1 <= limit <= 500:
        raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"limit": "must be between 1 and 500"})
    after = int(cursor.removeprefix("id:")) if cursor else None
    rest = [r for r in rows if after is None or ident(r) < after]
    page = rest[:limit]
    return page, (f"id:{ident(page[-1])}" if len(rest) > limit else None)


class FakeApi:
    """In-memory jem-bot API for one employer."""

    base_url = "http://fake.test"

    def __init__(self, timezone: str = "Africa/Johannesburg") -> None:
        self.employer = contracts.Employer(id=1, slug="acme", name="Acme Ltd", timezone=timezone)
        self.employees: list[contracts.Employee] = []
        self.announcements: dict[int, contracts.Announcement] = {}
        self.deliveries: dict[int, list[contracts.Delivery]] = {}
        self.messages: list[contracts.InboundMessage] = []
        self.idempotency: dict[str, tuple[bytes, int]] = {}
        self.calls: list[str] = []
        self.down = False
        self.unauthorized = False
        self.lose_next_create_response = False
        self.has_timeline = True
        # The installation's shared number, healthy, until a test says otherwise.
        self.current_sender: contracts.Sender | None = contracts.Sender(
            own=False,
            phone_number_id="100000000000001",
            waba_id=None,
            rate=80.0,
            access_token_hint="…abcd",
        )
        self.closed = False
        self._ids = itertools.count(1)

    # --- fixtures -------------------------------------------------------------------------------------------

    def add_employee(self, name: str, tags: Sequence[str] = (), *, opted_out: bool = False) -> contracts.Employee:
        n = len(self.employees) + 1
        e = contracts.Employee(
            id=n,
            phone=f"+2782{n:07d}",
            name=name,
            tags=list(tags),
            active=True,
            opted_out=opted_out,
            opted_out_at=NOW if opted_out else None,
            created_at=NOW,
            updated_at=NOW,
        )
        self.employees.append(e)
        return e

    def set_delivery_statuses(self, announcement_id: int, statuses: Sequence[str]) -> None:
        """Move the announcement's deliveries to these statuses (in order) as the dispatcher would."""
        rows = self.deliveries[announcement_id]
        for i, status in enumerate(statuses):
            error = contracts.DeliveryError(code=131026, title="Message undeliverable") if status == "failed" else None
            rows[i] = msgspec.structs.replace(
                rows[i], status=status, attempts=1, error=error, sent_at=NOW if status != "pending" else None
            )
        a = self.announcements[announcement_id]
        new_status = "dispatching" if a.status == "scheduled" else a.status
        self.announcements[announcement_id] = msgspec.structs.replace(a, status=new_status)

    # --- plumbing -------------------------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ApiUnreachable(f"{self.base_url} is unreachable (ConnectError)")
        if self.unauthorized:
            raise ApiError(401, "Unauthorized", "A valid bearer token is required.")

    def _counts(self, announcement_id: int) -> contracts.Counts:
        counts = contracts.Counts()
        for d in self.deliveries[announcement_id]:
            counts.total += 1
            setattr(counts, d.status, getattr(counts, d.status) + 1)
            if d.acknowledged_at is not None:
                counts.acknowledged += 1
        return counts

    def _view(self, announcement_id: int) -> contracts.Announcement:
        return msgspec.structs.replace(self.announcements[announcement_id], counts=self._counts(announcement_id))

    def _get(self, announcement_id: int) -> contracts.Announcement:
        if announcement_id not in self.announcements:
            raise ApiError(404, "Not Found", f"No announcement {announcement_id}.")
        return self._view(announcement_id)

    # --- the Api protocol -----------------------------------------------------------------------------------

    async def me(self) -> contracts.Me:
        self._enter("me")
        return contracts.Me(employer=self.employer)

    async def sender(self) -> contracts.Sender:
        self._enter("sender")
        if self.current_sender is None:
            # What Litestar answers for a route it does not have.
            raise ApiError(404, "Not Found", "Not Found")
        return self.current_sender

    async def list_announcements(
        self, *, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> contracts.Page[contracts.Announcement]:
        self._enter("list_announcements")
        items = [self._view(i) for i in sorted(self.announcements, reverse=True)]
        if status:
            items = [a for a in items if a.status == status]
        page, next_cursor = keyset_page(items, lambda a: a.id, cursor, limit)
        return contracts.Page(items=page, next_cursor=next_cursor)

    async def get_announcement(self, announcement_id: int) -> contracts.Announcement:
        self._enter("get_announcement")
        return self._get(announcement_id)

    async def list_deliveries(
        self,
        announcement_id: int,
        *,
        status: str | None = None,
        q: str | None = None,
        acknowledged: bool | None = None,
        cursor: str | None = None,
        limit: int = 200,
    ) -> contracts.Page[contracts.Delivery]:
        self._enter("list_deliveries")
        self._get(announcement_id)
        rows = sorted(self.deliveries[announcement_id], key=lambda d: d.id, reverse=True)
        if status:
            rows = [d for d in rows if d.status == status]
        if q:
            rows = [d for d in rows if q.lower() in d.employee_name.lower()]
        if acknowledged is not None:
            rows = [d for d in rows if (d.acknowledged_at is not None) == acknowledged]
        page, next_cursor = keyset_page(rows, lambda d: d.id, cursor, limit)
        return contracts.Page(items=page, next_cursor=next_cursor)

    async def timeline(self, announcement_id: int, *, bucket: str = "minute") -> contracts.Timeline:
        self._enter("timeline")
        if not self.has_timeline:
            raise ApiError(404, "Not Found", "Not Found")
        self._get(announcement_id)
        if bucket not in ("minute", "hour"):
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"bucket": "minute or hour"})
        zone = ZoneInfo(self.employer.timezone)

        def start(when: datetime) -> datetime:
            # Buckets start on the employer's clock, as the API's do.
            local = when.astimezone(zone).replace(second=0, microsecond=0)
            return (local if bucket == "minute" else local.replace(minute=0)).astimezone(UTC)

        points: dict[datetime, contracts.TimelinePoint] = {}
        for d in self.deliveries[announcement_id]:
            for step in ("sent", "delivered", "read", "acknowledged"):
                when = getattr(d, f"{step}_at")
                if when is not None:
                    point = points.setdefault(start(when), contracts.TimelinePoint(at=start(when)))
                    setattr(point, step, getattr(point, step) + 1)
        return contracts.Timeline(
            bucket="minute" if bucket == "minute" else "hour", points=sorted(points.values(), key=lambda p: p.at)
        )

    async def get_employee(self, employee_id: int) -> contracts.Employee:
        self._enter("get_employee")
        for e in self.employees:
            if e.id == employee_id:
                return e
        raise ApiError(404, "Not Found", "No such employee.")

    async def create_announcement(
        self,
        message: str,
        *,
        send_time: datetime | None,
        audience: contracts.Audience | None,
        idempotency_key: str,
    ) -> contracts.Announcement:
        self._enter("create_announcement")
        body = msgspec.json.encode(
            {"message": message, "send_time": send_time.isoformat() if send_time else None, "audience": audience}
        )
        if idempotency_key in self.idempotency:
            stored_body, announcement_id = self.idempotency[idempotency_key]
            if stored_body != body:
                raise ApiError(
                    422,
                    "Unprocessable Entity",
                    "This Idempotency-Key was used with a different body.",
                    {"Idempotency-Key": "reused with a different body"},
                )
            return self._view(announcement_id)
        errors: dict[str, str] = {}
        text = message.strip()
        if not 1 <= len(text) <= contracts.MAX_MESSAGE_LENGTH:
            errors["message"] = f"must be 1–{contracts.MAX_MESSAGE_LENGTH} characters after trimming"
        if send_time is not None and send_time.tzinfo is None:
            errors["send_time"] = "must carry a UTC offset"
        audience = audience or contracts.Audience(all=True)
        recipients = self._audience(audience, errors)
        if errors:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", errors)
        announcement_id = next(self._ids)
        when = send_time if send_time is not None and send_time > NOW else NOW
        self.announcements[announcement_id] = contracts.Announcement(
            id=announcement_id,
            message=text,
            send_time=when,
            status="scheduled",
            audience=audience,
            created_at=NOW + timedelta(seconds=announcement_id),
            dispatched_at=None,
            completed_at=None,
            counts=contracts.Counts(),
        )
        self.deliveries[announcement_id] = [
            contracts.Delivery(
                id=announcement_id * 1000 + e.id,
                employee_id=e.id,
                employee_name=e.name,
                phone=e.phone[:3] + "•••••" + e.phone[-4:],
                status="pending",
                attempts=0,
                error=None,
                sent_at=None,
                delivered_at=None,
                read_at=None,
                acknowledged_at=None,
            )
            for e in recipients
        ]
        self.idempotency[idempotency_key] = (body, announcement_id)
        if self.lose_next_create_response:
            # The announcement is stored, but the client never hears back: the worst case for a retry.
            self.lose_next_create_response = False
            raise ApiUnreachable(f"{self.base_url} is unreachable (ReadTimeout)")
        return self._view(announcement_id)

    def _audience(self, audience: contracts.Audience, errors: dict[str, str]) -> list[contracts.Employee]:
        eligible = [e for e in self.employees if e.active and not e.opted_out]
        if audience.employee_ids is not None:
            known = {e.id for e in self.employees}
            missing = [i for i in audience.employee_ids if i not in known]
            if missing:
                errors["audience.employee_ids"] = f"unknown employees: {missing}"
            return [e for e in eligible if e.id in audience.employee_ids]
        if audience.tags is not None:
            if not audience.tags:
                errors["audience.tags"] = "name at least one tag"
            return [e for e in eligible if set(e.tags) & set(audience.tags)]
        return eligible

    async def cancel_announcement(self, announcement_id: int) -> contracts.Announcement:
        self._enter("cancel_announcement")
        a = self._get(announcement_id)
        if a.status in ("completed", "cancelled"):
            raise ApiError(409, "Conflict", f"Announcement {announcement_id} is {a.status}.")
        self.deliveries[announcement_id] = [
            msgspec.structs.replace(d, status="cancelled") if d.status == "pending" else d
            for d in self.deliveries[announcement_id]
        ]
        self.announcements[announcement_id] = msgspec.structs.replace(
            self.announcements[announcement_id], status="cancelled", cancelled_at=NOW
        )
        return self._view(announcement_id)

    async def resend_unknown(self, announcement_id: int) -> contracts.ResendResult:
        self._enter("resend_unknown")
        self._get(announcement_id)
        rows = self.deliveries[announcement_id]
        resent = sum(1 for d in rows if d.status == "unknown")
        self.deliveries[announcement_id] = [
            msgspec.structs.replace(d, status="pending") if d.status == "unknown" else d for d in rows
        ]
        return contracts.ResendResult(announcement_id=announcement_id, resent=resent, requested_at=NOW)

    async def list_employees(
        self,
        *,
        tags: Sequence[str] = (),
        q: str | None = None,
        opted_out: bool | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> contracts.TotalPage[contracts.Employee]:
        self._enter("list_employees")
        rows = [e for e in reversed(self.employees) if e.active]
        if tags:
            rows = [e for e in rows if set(e.tags) & set(tags)]
        if q:
            rows = [e for e in rows if q.lower() in e.name.lower() or q in e.phone]
        if opted_out is not None:
            rows = [e for e in rows if e.opted_out == opted_out]
        page, next_cursor = keyset_page(rows, lambda e: e.id, cursor, limit)
        return contracts.TotalPage(items=page, next_cursor=next_cursor, total=len(rows))

    async def list_messages(
        self, *, cursor: str | None = None, limit: int = 50
    ) -> contracts.Page[contracts.InboundMessage]:
        self._enter("list_messages")
        rows = sorted(self.messages, key=lambda m: m.id, reverse=True)
        page, next_cursor = keyset_page(rows, lambda m: m.id, cursor, limit)
        return contracts.Page(items=page, next_cursor=next_cursor)

    async def aclose(self) -> None:
        self.closed = True
