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


class Me(msgspec.Struct, kw_only=True):
    employer: Employer


# --- employees -------------------------------------------------------------------------------------


class EmployeeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    phone: Annotated[str, msgspec.Meta(description="E.164, e.g. +27821234567; spaces and dashes are removed")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    tags: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = []


class EmployeePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    phone: str | msgspec.UnsetType = msgspec.UNSET
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    tags: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


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


class EmployeeImport(msgspec.Struct, kw_only=True):
    # Rows are validated one by one so that every bad row can be reported by index.
    employees: list[dict[str, object]]


class ImportResult(msgspec.Struct, kw_only=True):
    created: int
    updated: int


# --- announcements ---------------------------------------------------------------------------------


class Audience(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Exactly one of: all active employees, employees with any of these tags, or these employees."""

    all: bool | None = None
    tags: list[str] | None = None
    employee_ids: list[int] | None = None


class AnnouncementIn(msgspec.Struct, kw_only=True):
    message: str
    send_time: str | None = None
    audience: Audience | None = None


class AnnouncementPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: str | msgspec.UnsetType = msgspec.UNSET
    send_time: str | msgspec.UnsetType | None = msgspec.UNSET
    audience: Audience | msgspec.UnsetType = msgspec.UNSET


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


class ResendResult(msgspec.Struct, kw_only=True):
    announcement_id: int
    resent: int
    requested_at: datetime


# --- inbox -----------------------------------------------------------------------------------------


class InboundMessage(msgspec.Struct, kw_only=True):
    id: int
    employee_id: int | None
    employee_name: str | None
    type: str
    text: str | None
    announcement_id: int | None
    received_at: datetime


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

    phone_number_id: str
    waba_id: str
    access_token: str
    rate: float = 80.0


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
