"""The REST API's types: msgspec Structs shared by the service and the console.

Plain data only (msgspec + stdlib): the console imports this module without pulling in Litestar or
SQLAlchemy (an import-linter contract enforces it). Times are timezone-aware datetimes, serialised as
RFC 3339; ids are integers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

AnnouncementStatus = Literal["scheduled", "dispatching", "completed", "cancelled"]
DeliveryStatus = Literal["pending", "sending", "sent", "delivered", "read", "failed", "unknown", "cancelled", "skipped"]
ANNOUNCEMENT_STATUSES: tuple[str, ...] = ("scheduled", "dispatching", "completed", "cancelled")
DELIVERY_STATUSES: tuple[str, ...] = (
    "pending", "sending", "sent", "delivered", "read", "failed", "unknown", "cancelled", "skipped",
)  # fmt: skip

MAX_MESSAGE_LENGTH = 4096
MAX_IMPORT_ROWS = 10_000


def documented(**schema: object) -> msgspec.Meta:
    """A constraint the service checks itself, shown in the OpenAPI document only.

    Services check these by hand so that a 422 names every bad field at once, in words of ours; `msgspec.Meta(
    max_length=…)` would be enforced on decoding instead, stopping at the first. Litestar copies
    `extra_json_schema["extra"]` onto the field's schema (JSON Schema names: `format`, `maxLength`, `pattern`, …).
    """
    return msgspec.Meta(extra_json_schema={"extra": schema})


# Checked after trimming (bot/announcements/service.py).
Message = Annotated[str, documented(minLength=1, maxLength=MAX_MESSAGE_LENGTH)]
# RFC 3339 with a UTC offset (`2026-12-01T09:00:00+02:00`, `…Z`); a time without one is a 422.
SendTime = Annotated[str, documented(format="date-time")]
# An ISO 8601 duration (`PT24H`, `P1D`, `PT90M`, `P2DT3H`) between 1 hour and 14 days (bot/announcements/durations.py).
RemindAfter = Annotated[str, documented(format="duration", maxLength=64)]


class Page(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None = None


class TotalPage(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    next_cursor: str | None = None
    total: int


class FieldError(msgspec.Struct, kw_only=True):
    field: str
    message: str


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details; `errors` names every invalid field on a 422."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# --- account ---------------------------------------------------------------------------------------


class Employer(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    name: str
    timezone: str
    # The language template announcements use for employees without one (null: any approved translation).
    language: str | None = None


class Me(msgspec.Struct, kw_only=True):
    employer: Employer


# --- employees -------------------------------------------------------------------------------------


Language = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=12,
        description='WhatsApp template language code: "en", "af", "zu", "en_US", "pt_BR"…',
    ),
]


class EmployeeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An upsert by phone: only the fields sent change. One left out keeps the employee's value (a new employee
    needs a `name`; its `tags` default to none), so a client that sends what it knows never wipes the rest."""

    phone: Annotated[str, msgspec.Meta(description="E.164, e.g. +27821234567; spaces and dashes are removed")]
    name: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="required for a new employee")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    tags: (
        Annotated[
            list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
            msgspec.Meta(description="left out: kept (none for a new employee); [] removes them all"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    # Not sent: an existing employee keeps theirs; null: none (the employer's default language applies).
    language: Language | msgspec.UnsetType | None = msgspec.UNSET


class EmployeePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    phone: str | msgspec.UnsetType = msgspec.UNSET
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    tags: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType | None = msgspec.UNSET


class Employee(msgspec.Struct, kw_only=True):
    id: int
    phone: str
    name: str
    tags: list[str]
    active: bool
    opted_out: bool
    opted_out_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Whether WhatsApp's business-scoped user id is known for them (a message without their number, from a user
    # with a WhatsApp username, can then still be matched to them). The id itself is never shown.
    bsuid_known: bool = False
    # Template announcements go out in it when the template has it (else the employer's default language).
    language: str | None = None


class EmployeeImport(msgspec.Struct, kw_only=True):
    # Rows are validated one by one so that every bad row can be reported by index.
    employees: list[dict[str, object]]


class ImportResult(msgspec.Struct, kw_only=True):
    created: int
    updated: int


class Erased(msgspec.Struct, kw_only=True):
    """`DELETE /employees/{id}?erase=true`: the employee's personal data is gone from the database since then."""

    id: int
    erased_at: datetime


# --- announcements ---------------------------------------------------------------------------------


class Audience(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Exactly one of: all active employees, employees with any of these tags, or these employees."""

    all: bool | None = None
    tags: list[str] | None = None
    employee_ids: list[int] | None = None


class AnnouncementIn(msgspec.Struct, kw_only=True):
    # One of the two: plain text (reaches only employees who wrote in the last 24 h, unless the server sends
    # text through WHATSAPP_TEMPLATE), or an approved template.
    message: Message | None = None
    send_time: SendTime | None = None
    audience: Audience | None = None
    template: TemplateUse | None = None
    # A reminder to those reached and not acknowledged, made once, this long after the announcement completes.
    remind_after: RemindAfter | None = None


class ReminderIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /announcements/{id}/remind: all optional; by default the original's text prefixed "Reminder: " (or its
    template), now."""

    message: Message | None = None
    template: TemplateUse | None = None
    send_time: SendTime | None = None


class ReminderSummary(msgspec.Struct, kw_only=True):
    id: int
    status: AnnouncementStatus
    send_time: datetime
    # Its deliveries, and how many of those employees acknowledged the original or any reminder of it.
    recipients: int
    acknowledged: int
    # Share of the original's reached employees who had acknowledged by the time the next reminder was
    # dispatched (by now, for the last one).
    acknowledgement_rate: float


class ReminderAudience(msgspec.Struct, kw_only=True):
    count: int


class AnnouncementPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: Message | msgspec.UnsetType = msgspec.UNSET
    send_time: SendTime | msgspec.UnsetType | None = msgspec.UNSET
    audience: Audience | msgspec.UnsetType = msgspec.UNSET
    template: TemplateUse | msgspec.UnsetType = msgspec.UNSET


class Counts(msgspec.Struct, kw_only=True):
    total: int = 0
    pending: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    skipped: int = 0
    acknowledged: int = 0


class TemplateHeader(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A template's header: media by public HTTPS link or by an id from `POST /media`, or text."""

    link: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    media_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    text: Annotated[str, msgspec.Meta(max_length=60)] | None = None
    # A document's name as the employee sees it.
    filename: Annotated[str, msgspec.Meta(max_length=240)] | None = None


class TemplateUse(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """An approved template from `GET /templates` with its body parameters ({{1}}, {{2}}, …) in order."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    parameters: list[str] = []
    header: TemplateHeader | None = None


class TemplateButton(msgspec.Struct, kw_only=True):
    type: str
    text: str


class Template(msgspec.Struct, kw_only=True):
    name: str
    language: str
    status: str
    category: str | None
    header: Literal["none", "text", "image", "document", "video"]
    body_parameters: int
    buttons: list[TemplateButton]
    preview: str


class SyncResult(msgspec.Struct, kw_only=True):
    synced: int


class Media(msgspec.Struct, kw_only=True):
    media_id: str
    mime_type: str
    bytes: int


class Announcement(msgspec.Struct, kw_only=True):
    id: int
    message: str
    send_time: datetime
    status: AnnouncementStatus
    audience: Audience
    created_at: datetime
    dispatched_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None = None
    counts: Counts
    # The template it is sent as (its parameters flattened as they are sent); `message` and `preview` then hold
    # the rendered text as the employee will see it.
    template: TemplateUse | None = None
    preview: str = ""
    # Deliveries sent, by the template translation used.
    languages: dict[str, int] = {}
    # Failed deliveries by Meta's code, e.g. 131047: text outside the 24-hour window (a template is needed).
    failures: list[FailureCount] = []
    # The announcement this one reminds of; `remind_after` as given on create (normalised, e.g. `PT24H`).
    reminder_of: int | None = None
    remind_after: str | None = None
    # Its reminders (reminders of reminders too), oldest first; filled in by GET /announcements/{id} only.
    reminders: list[ReminderSummary] = []


class FailureCount(msgspec.Struct, kw_only=True):
    code: int | None
    title: str | None
    count: int


class DeliveryError(msgspec.Struct, kw_only=True):
    """Why a delivery is `failed` (Meta's code and title) or `unknown` (a timeout, a 5xx, a worker that died)."""

    code: int | None
    title: str | None


class Delivery(msgspec.Struct, kw_only=True):
    id: int
    employee_id: int
    employee_name: str
    phone: str
    status: DeliveryStatus
    attempts: int
    error: DeliveryError | None
    skip_reason: str | None = None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    acknowledged_at: datetime | None
    # The template translation it was sent in, and Meta's pacing status when not plain "accepted".
    language: str | None = None
    message_status: str | None = None


class ResendResult(msgspec.Struct, kw_only=True):
    announcement_id: int
    resent: int
    requested_at: datetime


TimelineBucket = Literal["minute", "hour"]


class TimelinePoint(msgspec.Struct, kw_only=True):
    """How many of an announcement's deliveries were sent, delivered, read and acknowledged in one bucket."""

    at: datetime
    sent: int = 0
    delivered: int = 0
    read: int = 0
    acknowledged: int = 0


class Timeline(msgspec.Struct, kw_only=True):
    """Buckets with something in them, oldest first (GET /announcements/{id}/timeline)."""

    bucket: TimelineBucket
    points: list[TimelinePoint]


# --- inbox -----------------------------------------------------------------------------------------


class InboundMessage(msgspec.Struct, kw_only=True):
    id: int
    employee_id: int | None
    employee_name: str | None
    type: str
    text: str | None
    announcement_id: int | None
    received_at: datetime
    # An operator replied to this employee (POST /employees/{id}/messages) after this message was received.
    answered: bool = False


# --- conversations (docs/api.md#conversations) ---------------------------------------------------------


class ConversationItem(msgspec.Struct, kw_only=True):
    """One message of a conversation: the employee's (`in`) or ours (`out`: an announcement, a bot reply, an
    operator reply). `id` is the inbound message's id, or the delivery's."""

    direction: Literal["in", "out"]
    id: int
    kind: Literal["message", "announcement", "reply"]
    # The inbound message's WhatsApp type (text, button, interactive, image, …); null for ours.
    type: str | None
    text: str | None
    announcement_id: int | None
    # The delivery's status; null for the employee's messages.
    status: DeliveryStatus | None
    # Received (in); sent, else queued (out).
    at: datetime


class Conversation(msgspec.Struct, kw_only=True):
    items: list[ConversationItem]
    # WhatsApp's customer-service window: free-form text may be sent until 24 h after their last message.
    window_open: bool
    window_closes_at: datetime | None
    next_cursor: str | None = None


class ReplyIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Checked after trimming (bot/conversations/service.py).
    text: Message


class Reply(ConversationItem, kw_only=True):
    """An operator reply as queued: sent once by the dispatcher, like every delivery."""

    delivery_id: int


# --- sender ----------------------------------------------------------------------------------------


class SenderState(msgspec.Struct, kw_only=True):
    """Whether the number can send now: paused (our account, token or number is unusable) or backed off
    (throttled, or Graph unreachable) until when, and why. Null times mean "not now"."""

    phone_number_id: str
    paused_until: datetime | None = None
    pause_reason: str | None = None
    backoff_until: datetime | None = None
    backoff_reason: str | None = None


class SenderIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An employer's own WhatsApp number: Graph's ids for it, an access token allowed to send from it, a rate."""

    phone_number_id: Annotated[str, documented(pattern="^[0-9]{5,32}$")]
    waba_id: Annotated[str, documented(pattern="^[0-9]{5,32}$")]
    access_token: Annotated[str, documented(minLength=10, maxLength=2048)]
    rate: Annotated[float, documented(minimum=1, maximum=1000)] = 80.0


class Sender(msgspec.Struct, kw_only=True):
    """The WhatsApp number an employer's announcements go out from."""

    own: bool
    phone_number_id: str
    waba_id: str | None
    rate: float
    access_token_hint: str | None
    paused_until: datetime | None = None
    pause_reason: str | None = None
    backoff_until: datetime | None = None
    backoff_reason: str | None = None


# --- health ----------------------------------------------------------------------------------------


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    schema: str | None = None
    # The dispatcher in the process that answered, if it runs one (`serve` runs one, in one of its processes).
    dispatcher: str | None = None
    # Every live dispatcher, wherever it runs: the figure to watch.
    dispatchers_alive: int | None = None
    sender: SenderState | None = None
    detail: str | None = None
