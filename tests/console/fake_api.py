"""An in-memory stand-in for BotApi with the service's semantics (docs/api.md), for Pilot tests.

It implements the same methods, the same validation (422 naming the field), the same idempotency rules
(same key + same body → the same announcement; same key + other body → 422) and the same cancel and
resend-unknown transitions. Lists are newest first and paginated with `limit`, `cursor` and `next_cursor` as
the API's keyset pages are. Faults are injected explicitly: `down` (every call unreachable), `unauthorized`
(every call 401), and `lose_next_create_response` (the server commits, then the answer is lost). What GET
/sender answers is `current_sender`: replace it to pause or back off the number, or set None for a server
older than /sender (404); `has_timeline = False` plays a server older than the timeline endpoint.

Templates: `graph_templates` is the account's catalogue in WhatsApp, `templates` what the server last synced
(GET /templates lists it; POST /templates/sync copies the first into the second, or 409 when `sync_refused`);
template announcements are checked as the server checks them (422 naming `template.name`,
`template.parameters`, `template.parameters[i]`, `template.header`, `template.header.link`) and previewed with the
server's own renderer. POST /media reads the kind from the content (PNG/JPEG/PDF/MP4/text; 415 otherwise, 413
over the kind's limit, 502 when `media_refused`) and keeps what was uploaded in `uploads`.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec

from bot import contracts
from bot.templates.catalogue import Template as CatalogueTemplate
from bot.templates.render import MAX_PARAMETER_LENGTH, flatten, preview
from bot.templates.service import to_contract
from console.api import ApiError, ApiUnreachable
from console.export import save_stream

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
# Deliveries that reached the phone: the ones a reminder may go to (if not acknowledged).
REACHED = ("sent", "delivered", "read")
# WhatsApp's customer-service window: free-form replies only this long after the employee's last message.
WINDOW = timedelta(hours=24)

T = TypeVar("T")

GOT_IT = [{"type": "QUICK_REPLY", "text": "Got it"}]
MB = 1024 * 1024
MEDIA_LIMITS = {"image": 5 * MB, "video": 16 * MB, "document": 100 * MB}


def catalogue_template(
    name: str,
    body: str,
    *,
    language: str = "en_US",
    header: str = "none",
    header_text: str | None = None,
    status: str = "APPROVED",
    buttons: Sequence[dict[str, str]] = (),
    footer: str | None = None,
) -> CatalogueTemplate:
    """A template translation as the server keeps it after a sync."""
    body_parameters = len(set(re.findall(r"\{\{\s*(\d+)\s*\}\}", body)))
    return CatalogueTemplate(
        name=name, language=language, status=status, category="UTILITY", header_format=header,
        header_text=header_text, body_text=body, body_parameters=body_parameters, buttons=list(buttons),
        footer_text=footer,
    )  # fmt: skip


def default_catalogue() -> list[CatalogueTemplate]:
    """The templates of tests/integration/test_templates.py, in short."""
    return [
        catalogue_template("shift_notice", "Hallo span, {{1}} begin op {{2}}.", language="af", header="image",
                           buttons=[{"type": "QUICK_REPLY", "text": "Reg so"}]),
        catalogue_template("shift_notice", "Hi team, {{1}} starts on {{2}}.", header="image", buttons=GOT_IT,
                           footer="Reply STOP to opt out"),
        catalogue_template("policy_update", "Please read: {{1}}", header="document"),
        catalogue_template("titled_notice", "{{1}}", header="text", header_text="Notice: {{1}}", buttons=GOT_IT),
        catalogue_template("fixed_header", "{{1}}", header="text", header_text="Important"),
        catalogue_template("draft_notice", "{{1}}", status="PENDING"),
    ]  # fmt: skip


def sniff(content: bytes) -> str | None:
    """The MIME type the content shows, as POST /media reads it (the common kinds only)."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"%PDF"):
        return "application/pdf"
    if content[4:8] == b"ftyp":
        return "video/mp4"
    try:
        content.decode()
    except UnicodeDecodeError:
        return None
    return "text/plain"


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
        self.graph_templates: list[CatalogueTemplate] = default_catalogue()
        # The server reads the catalogue when it is first needed: the fake starts synced.
        self.templates: list[CatalogueTemplate] = list(self.graph_templates)
        self.sync_refused = False
        self.media_refused = False
        self.uploads: list[tuple[str, bytes]] = []
        # Issue 17. Operator replies per employee; Idempotency-Key → (body, employee id, reply); the keys each
        # POST /employees/{id}/messages carried; the filters each GET /messages was asked with.
        self.replies: dict[int, list[contracts.Reply]] = {}
        self.reply_keys: dict[str, tuple[bytes, int, contracts.Reply]] = {}
        self.sent_keys: list[str] = []
        self.message_filters: list[dict[str, object]] = []
        self.lose_next_send_response = False
        self.export_columns = ("employee", "phone", "status", "sent_at", "acknowledged_at", "error")

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
        # Only the detail lists the reminders (as the API's GET /announcements/{id}).
        return msgspec.structs.replace(self._get(announcement_id), reminders=self._reminders(announcement_id))

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
        message: str | None,
        *,
        send_time: datetime | None,
        audience: contracts.Audience | None,
        idempotency_key: str,
        template: contracts.TemplateUse | None = None,
    ) -> contracts.Announcement:
        self._enter("create_announcement")
        fields: dict[str, object] = {
            "message": message, "send_time": send_time.isoformat() if send_time else None, "audience": audience
        }  # fmt: skip
        if template is not None:
            fields["template"] = template
        body = msgspec.json.encode(fields)
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
        stored: contracts.TemplateUse | None = None
        if (message is None) == (template is None):
            errors["message"] = "give either message (text) or template, not both"
            text = ""
        elif template is not None:
            text, stored = self._template(template, errors)
        else:
            text = (message or "").strip()
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
            template=stored,
            preview=text if stored is not None else "",
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

    def _template(self, use: contracts.TemplateUse, errors: dict[str, str]) -> tuple[str, contracts.TemplateUse | None]:
        """The server's checks of a template announcement (bot/announcements/service.py: _template, _header)."""
        found = [t for t in self.templates if t.name == use.name]
        approved = [t for t in found if t.approved]
        if not approved:
            why = "is not approved" if found else "is not in the catalogue"
            errors["template.name"] = f"{use.name!r} {why}"
            return "", None
        reference = next((t for t in approved if t.language.startswith("en")), approved[0])
        params = [flatten(p) for p in use.parameters]
        if len(params) != reference.body_parameters:
            errors["template.parameters"] = (
                f"{use.name!r} takes {reference.body_parameters} body parameter(s), got {len(params)}"
            )
        for i, p in enumerate(params):
            if not p:
                errors[f"template.parameters[{i}]"] = "must not be empty"
            elif len(p) > MAX_PARAMETER_LENGTH:
                errors[f"template.parameters[{i}]"] = f"is {len(p)} characters; WhatsApp takes at most 1024"
        given = msgspec.structs.asdict(use.header) if use.header is not None else {}
        header = {k: v for k, v in given.items() if v is not None}
        kind = reference.header_format
        if kind in MEDIA_LIMITS:
            if len([k for k in ("link", "media_id") if k in header]) != 1 or "text" in header:
                errors["template.header"] = f"{use.name!r} has a {kind} header: give exactly one of link or media_id"
            elif "link" in header and not header["link"].startswith("https://"):
                errors["template.header.link"] = "must be an https:// URL"
            if "filename" in header and kind != "document":
                errors["template.header.filename"] = "only a document header has one"
        elif reference.header_parameters:
            if set(header) != {"text"} or not flatten(header["text"]):
                errors["template.header"] = f'{use.name!r} has a text header with a variable: give {{"text": …}}'
            header = {"text": flatten(header.get("text", ""))}
        elif header:
            errors["template.header"] = f"{use.name!r} has no header or a fixed one: leave header out"
        stored = contracts.TemplateUse(
            name=use.name, parameters=params, header=contracts.TemplateHeader(**header) if header else None
        )
        return preview(reference, params, header or None), stored

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
        self,
        *,
        cursor: str | None = None,
        limit: int = 50,
        employee_id: int | None = None,
        acknowledgements: bool | None = None,
    ) -> contracts.Page[contracts.InboundMessage]:
        self._enter("list_messages")
        self.message_filters.append({"employee_id": employee_id, "acknowledgements": acknowledgements})
        rows = sorted(self.messages, key=lambda m: m.id, reverse=True)
        if employee_id is not None:
            rows = [m for m in rows if m.employee_id == employee_id]
        if acknowledgements is False:
            rows = [m for m in rows if not self.is_acknowledgement(m)]
        rows = [msgspec.structs.replace(m, answered=self._answered(m)) for m in rows]
        page, next_cursor = keyset_page(rows, lambda m: m.id, cursor, limit)
        return contracts.Page(items=page, next_cursor=next_cursor)

    @staticmethod
    def is_acknowledgement(message: contracts.InboundMessage) -> bool:
        """What `acknowledgements=false` leaves out, as the service decides it: a message that acknowledged an
        announcement (a quick-reply tap, or a reply quoting it, which is what sets its `announcement_id`)."""
        return message.type == "button" or message.announcement_id is not None

    def _answered(self, message: contracts.InboundMessage) -> bool:
        replies = self.replies.get(message.employee_id or 0, [])
        return any(r.at >= message.received_at for r in replies)

    # --- issue 17: reminders, CSV export, conversations ------------------------------------------------------

    def _reached_unacknowledged(self, announcement_id: int) -> list[int]:
        acknowledged = {d.employee_id for d in self._family_deliveries(announcement_id) if d.acknowledged_at}
        return [
            d.employee_id
            for d in self.deliveries[announcement_id]
            if d.status in REACHED and d.employee_id not in acknowledged
        ]

    def _family_deliveries(self, announcement_id: int) -> list[contracts.Delivery]:
        """The original's deliveries and its reminders' (an acknowledgement of any counts for all)."""
        rows = list(self.deliveries[announcement_id])
        for a in self.announcements.values():
            if a.reminder_of == announcement_id:
                rows += self.deliveries[a.id]
        return rows

    def _reminders(self, announcement_id: int) -> list[contracts.ReminderSummary]:
        acknowledged = {d.employee_id for d in self._family_deliveries(announcement_id) if d.acknowledged_at}
        reached = {d.employee_id for d in self.deliveries[announcement_id] if d.status in REACHED}
        rate = len(acknowledged & reached) / len(reached) if reached else 0.0
        out = []
        for a in sorted(self.announcements.values(), key=lambda a: a.id):
            if a.reminder_of != announcement_id:
                continue
            employees = {d.employee_id for d in self.deliveries[a.id]}
            out.append(
                contracts.ReminderSummary(
                    id=a.id,
                    status=a.status,
                    send_time=a.send_time,
                    recipients=len(employees),
                    acknowledged=len(employees & acknowledged),
                    acknowledgement_rate=rate,
                )
            )
        return out

    async def reminder_audience(self, announcement_id: int) -> int:
        self._enter("reminder_audience")
        self._get(announcement_id)
        return len(self._reached_unacknowledged(announcement_id))

    async def remind(
        self, announcement_id: int, *, message: str | None = None, send_time: datetime | None = None
    ) -> contracts.Announcement:
        self._enter("remind")
        original = self._get(announcement_id)
        # As the service: refused while scheduled, or cancelled before anything got out.
        reached = any(d.status in REACHED for d in self.deliveries[announcement_id])
        if original.status == "scheduled" or (original.status == "cancelled" and not reached):
            raise ApiError(409, "Conflict", f"Announcement {announcement_id} has not been sent yet: nobody to remind.")
        text = (message if message is not None else f"Reminder: {original.message}").strip()
        errors: dict[str, str] = {}
        if not 1 <= len(text) <= contracts.MAX_MESSAGE_LENGTH:
            errors["message"] = f"must be 1–{contracts.MAX_MESSAGE_LENGTH} characters after trimming"
        if send_time is not None and send_time.tzinfo is None:
            errors["send_time"] = "must carry a UTC offset"
        if errors:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", errors)
        recipients = set(self._reached_unacknowledged(announcement_id))
        reminder_id = next(self._ids)
        self.announcements[reminder_id] = contracts.Announcement(
            id=reminder_id,
            message=text,
            send_time=send_time if send_time is not None and send_time > NOW else NOW,
            status="scheduled",
            audience=contracts.Audience(employee_ids=sorted(recipients)),
            created_at=NOW + timedelta(seconds=reminder_id),
            dispatched_at=None,
            completed_at=None,
            counts=contracts.Counts(),
            reminder_of=announcement_id,
        )
        self.deliveries[reminder_id] = [
            msgspec.structs.replace(
                d, id=reminder_id * 1000 + d.employee_id, status="pending", attempts=0, sent_at=None,
                delivered_at=None, read_at=None, acknowledged_at=None, error=None,
            )
            for d in self.deliveries[announcement_id]
            if d.employee_id in recipients
        ]  # fmt: skip
        return self._view(reminder_id)

    async def export_deliveries(self, announcement_id: int, destination: Path, *, full_phones: bool = False) -> int:
        self._enter("export_deliveries")
        self._get(announcement_id)
        phones = {e.id: e.phone for e in self.employees}

        async def chunks() -> AsyncIterator[bytes]:
            # Row by row, as the API streams it.
            for row in [self.export_columns, *self._export_rows(announcement_id, phones if full_phones else None)]:
                line = io.StringIO()
                csv.writer(line).writerow(row)
                yield line.getvalue().encode()

        return await save_stream(chunks(), destination)

    def _export_rows(self, announcement_id: int, phones: dict[int, str] | None) -> list[tuple[str, ...]]:
        return [
            (
                d.employee_name,
                phones[d.employee_id] if phones is not None else d.phone,
                d.status,
                d.sent_at.isoformat() if d.sent_at else "",
                d.acknowledged_at.isoformat() if d.acknowledged_at else "",
                d.error.title or "" if d.error else "",
            )
            for d in sorted(self.deliveries[announcement_id], key=lambda d: d.id)
        ]

    def _employee(self, employee_id: int) -> contracts.Employee:
        for e in self.employees:
            if e.id == employee_id:
                return e
        raise ApiError(404, "Not Found", "No such employee.")

    def _last_inbound(self, employee_id: int) -> datetime | None:
        times = [m.received_at for m in self.messages if m.employee_id == employee_id]
        return max(times, default=None)

    async def conversation(
        self, employee_id: int, *, cursor: str | None = None, limit: int = 200
    ) -> contracts.Conversation:
        self._enter("conversation")
        self._employee(employee_id)
        items: list[contracts.ConversationItem] = [
            contracts.ConversationItem(
                direction="in", id=m.id, kind="message", type=m.type, text=m.text,
                announcement_id=m.announcement_id, status=None, at=m.received_at,
            )
            for m in self.messages
            if m.employee_id == employee_id
        ]  # fmt: skip
        for announcement_id, rows in self.deliveries.items():
            for d in rows:
                if d.employee_id == employee_id and d.sent_at is not None:
                    items.append(
                        contracts.ConversationItem(
                            direction="out", id=d.id, kind="announcement", type=None,
                            text=self.announcements[announcement_id].message, announcement_id=announcement_id,
                            status=d.status, at=d.sent_at,
                        )
                    )  # fmt: skip
        items += self.replies.get(employee_id, [])
        items.sort(key=lambda i: (i.at, i.direction == "out", i.id))
        if not 1 <= limit <= 500:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"limit": "must be between 1 and 500"})
        last = self._last_inbound(employee_id)
        window_open = last is not None and NOW - last < WINDOW
        return contracts.Conversation(
            items=items[-limit:],
            window_open=window_open,
            window_closes_at=last + WINDOW if window_open and last is not None else None,
        )

    async def send_message(self, employee_id: int, text: str, *, idempotency_key: str) -> contracts.Reply:
        self._enter("send_message")
        self.sent_keys.append(idempotency_key)
        self._employee(employee_id)
        body = msgspec.json.encode({"employee_id": employee_id, "text": text})
        if idempotency_key in self.reply_keys:
            stored_body, _, stored = self.reply_keys[idempotency_key]
            if stored_body != body:
                raise ApiError(
                    422, "Unprocessable Entity", "This Idempotency-Key was used with a different body.",
                    {"Idempotency-Key": "reused with a different body"},
                )  # fmt: skip
            return stored
        if not 1 <= len(text.strip()) <= contracts.MAX_MESSAGE_LENGTH:
            raise ApiError(
                422, "Unprocessable Entity", "Validation failed.",
                {"text": f"must be 1–{contracts.MAX_MESSAGE_LENGTH} characters after trimming"},
            )  # fmt: skip
        last = self._last_inbound(employee_id)
        if last is None or NOW - last >= WINDOW:
            raise ApiError(
                409,
                "Conflict",
                "The employee's last message is older than 24 hours: a free-form reply is outside the 24-hour "
                "window. Send a template announcement instead.",
            )
        reply_id = next(self._ids)
        reply = contracts.Reply(
            direction="out", id=reply_id, kind="reply", type=None, text=text.strip(), announcement_id=None,
            status="pending", at=NOW + timedelta(seconds=reply_id), delivery_id=reply_id,
        )  # fmt: skip
        self.replies.setdefault(employee_id, []).append(reply)
        self.reply_keys[idempotency_key] = (body, employee_id, reply)
        if self.lose_next_send_response:
            # Queued, but the answer never arrives: the retry must not queue a second reply.
            self.lose_next_send_response = False
            raise ApiUnreachable(f"{self.base_url} is unreachable (ReadTimeout)")
        return reply

    def set_reply_status(self, employee_id: int, status: str) -> None:
        """Move every reply to `employee_id` on to `status`, as the dispatcher and status webhooks would."""
        self.replies[employee_id] = [
            msgspec.structs.replace(r, status=status) for r in self.replies.get(employee_id, [])
        ]

    async def list_templates(self, *, all_statuses: bool = False) -> contracts.Page[contracts.Template]:
        self._enter("list_templates")
        return contracts.Page(items=[to_contract(t) for t in self.templates if all_statuses or t.approved])

    async def sync_templates(self) -> contracts.SyncResult:
        self._enter("sync_templates")
        if self.sync_refused:
            raise ApiError(
                409, "Conflict", "The template catalogue could not be read: Graph answered 400 (190: bad token)."
            )
        self.templates = list(self.graph_templates)
        return contracts.SyncResult(synced=len(self.templates))

    async def upload_media(self, filename: str, content: bytes) -> contracts.Media:
        self._enter("upload_media")
        if not content:
            raise ApiError(422, "Unprocessable Entity", "Validation failed.", {"file": "is empty"})
        mime = sniff(content[:8192])
        kind = {"image/png": "image", "image/jpeg": "image", "video/mp4": "video"}.get(mime or "", "document")
        if mime is None:
            raise ApiError(415, "Unsupported Media Type", "file: its content is unknown; WhatsApp takes JPEG/PNG …")
        if len(content) > MEDIA_LIMITS[kind]:
            raise ApiError(
                413, "Request Entity Too Large", f"file: a {kind} may be at most {MEDIA_LIMITS[kind] // MB} MB"
            )
        if self.media_refused:
            raise ApiError(502, "Bad Gateway", "WhatsApp refused the upload (HTTP 400)")
        self.uploads.append((filename, content))
        return contracts.Media(media_id=f"media-{len(self.uploads)}", mime_type=mime, bytes=len(content))

    async def aclose(self) -> None:
        self.closed = True
