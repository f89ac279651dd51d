"""ORM models: the schema Alembic manages. API types live in bot.contracts, never these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.base import Base

ANNOUNCEMENT_STATUSES = ("scheduled", "dispatching", "completed", "cancelled")
DELIVERY_STATUSES = (
    "pending",
    "sending",
    "sent",
    "delivered",
    "read",
    "failed",
    "unknown",
    "cancelled",
    "skipped",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Employer(Base):
    __tablename__ = "employer"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    # The language a template announcement is sent in to an employee who has none, when the template has it.
    language: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: tokens are 256-bit random, so a slow password hash adds nothing.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Employee(Base):
    __tablename__ = "employee"
    __table_args__ = (
        UniqueConstraint("employer_id", "phone", name="uq_employee_employer_id_phone"),
        Index("ix_employee_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    # E.164 with the leading +; inbound webhooks are matched on it (one person may work for several employers).
    phone: Mapped[str] = mapped_column(Text, index=True)
    name: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    opted_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # e.g. "en", "af", "zu", "en_US": template announcements go out in it when the template has it.
    language: Mapped[str | None] = mapped_column(Text)
    # Personal data erased on request (name, phone, tags, language, message texts): the ledger rows stay.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Announcement(Base):
    __tablename__ = "announcement"
    __table_args__ = (
        CheckConstraint(_in("status", ANNOUNCEMENT_STATUSES), name="status"),
        Index("ix_announcement_employer_id_id", "employer_id", "id"),
        # The dispatcher polls for due announcements; only scheduled ones are ever candidates.
        Index("ix_announcement_due", "send_at", postgresql_where=text("status = 'scheduled'")),
        # `remind_after` makes its reminder once, whatever races: one automatic reminder per original.
        Index("uq_announcement_auto_reminder", "reminder_of", unique=True, postgresql_where=text("auto_reminder")),
        Index("ix_announcement_dispatching", "id", postgresql_where=text("status = 'dispatching'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    message: Mapped[str] = mapped_column(Text)
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(Text, server_default="scheduled")
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # A template announcement: {"name", "parameters", "header"}; `message` then holds its rendered preview.
    template: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # A reminder of another announcement: its audience is frozen at fan-out from the original's employees who
    # were reached and have not acknowledged.
    reminder_of: Mapped[int | None] = mapped_column(ForeignKey("announcement.id", ondelete="CASCADE"), index=True)
    # `remind_after` on create: a reminder is made automatically, once, this long after completion.
    remind_after_seconds: Mapped[int | None] = mapped_column(Integer)
    auto_reminder: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_by_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The outbound ledger: one row per (announcement, employee), plus bot replies.

    Only bot.ledger changes `status`. Replies (STOP confirmations, HELP) have no announcement and are
    made unique by `reply_key` instead, so a redelivered webhook can never queue a second reply.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("announcement_id", "employee_id", name="uq_delivery_announcement_id_employee_id"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        CheckConstraint(_in("kind", ("announcement", "reply")), name="kind"),
        CheckConstraint(
            "(kind = 'announcement' AND announcement_id IS NOT NULL) OR (kind = 'reply' AND reply_key IS NOT NULL)",
            name="kind_key",
        ),
        # The claim scans only due pending rows; without this partial index it is ~7x slower.
        Index("ix_delivery_pending_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        # Each number's claim: its own due rows in order, however many other numbers' rows wait.
        Index(
            "ix_delivery_pending_route",
            text("COALESCE(phone_number_id, '')"),
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_delivery_sending_claimed_by", "claimed_by", postgresql_where=text("status = 'sending'")),
        # The reaper looks for expired leases among the (few) rows being sent.
        Index("ix_delivery_sending_lease_until", "lease_until", postgresql_where=text("status = 'sending'")),
        Index("ix_delivery_announcement_id_status", "announcement_id", "status"),
        Index("ix_delivery_employee_id", "employee_id"),
        # Operator replies (POST /employees/{id}/messages) are the replies keyed `op:…`: the inbox's `answered`
        # looks for one to the employee after each message without reading the employee's other deliveries.
        Index(
            "ix_delivery_operator_reply",
            "employee_id",
            "created_at",
            postgresql_where=text("reply_key LIKE 'op:%'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    announcement_id: Mapped[int | None] = mapped_column(ForeignKey("announcement.id", ondelete="CASCADE"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text, server_default="announcement")
    body: Mapped[str | None] = mapped_column(Text)
    reply_key: Mapped[str | None] = mapped_column(Text, unique=True)
    # A reply to someone who wrote without their number goes to their business-scoped user id (BSUID).
    recipient_user_id: Mapped[str | None] = mapped_column(Text)
    # While waiting: the own number it will go out from (NULL: the shared one), kept current by every statement
    # that makes a row pending and by sender changes (SQL `delivery_route()`). Once claimed: the number it went
    # out from.
    phone_number_id: Mapped[str | None] = mapped_column(Text)
    # A structured reply (an interactive list), sent instead of `body` as text.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The template translation it was sent in; Meta's `message_status` when it was not plain "accepted"
    # (e.g. held_for_quality_assessment).
    language: Mapped[str | None] = mapped_column(Text)
    message_status: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = _created()
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A claim holds the row until then; past it the reaper makes it `unknown`, whether its worker lives or not
    # (docs/architecture.md#leases).
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Claims ever made on this row; never decreases, so (id, claims) names one claim, and a late outcome write
    # of an old claim can never land on a newer one.
    claims: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    wamid: Mapped[str | None] = mapped_column(Text, unique=True)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    resend_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    unknown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ResendRequest(Base):
    """Audit of the one operator action that knowingly risks a duplicate."""

    __tablename__ = "resend_request"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcement.id", ondelete="CASCADE"), index=True)
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_token.id", ondelete="SET NULL"))
    deliveries: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = _created()


class WebhookEvent(Base):
    """Durable dedup of what Meta sent: `msg:<wamid>`, `st:<wamid>:<status>`, or a body hash for other kinds."""

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


class InboundMessage(Base):
    __tablename__ = "inbound_message"
    __table_args__ = (
        Index("ix_inbound_message_employer_id_id", "employer_id", "id"),
        Index("ix_inbound_message_received_at", "received_at"),
        # One employee's conversation, newest first, and their last message (the 24-hour window).
        Index("ix_inbound_message_employee_id_id", "employee_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    wamid: Mapped[str] = mapped_column(Text, unique=True)
    employer_id: Mapped[int | None] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employee.id", ondelete="SET NULL"))
    # A user with a WhatsApp username may write without their number: then only their BSUID is known.
    from_phone: Mapped[str | None] = mapped_column(Text)
    from_user_id: Mapped[str | None] = mapped_column(Text)
    # The number it was written to (`metadata.phone_number_id`): an employer's own, or the shared one.
    phone_number_id: Mapped[str | None] = mapped_column(Text)
    # Written on the shared number by someone employed at several employers there, without saying which:
    # kept out of every inbox until they choose (docs/architecture.md#several-numbers).
    held: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    type: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    context_wamid: Mapped[str | None] = mapped_column(Text)
    announcement_id: Mapped[int | None] = mapped_column(ForeignKey("announcement.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    __tablename__ = "idempotency_key"
    __table_args__ = (
        PrimaryKeyConstraint("employer_id", "key", name="pk_idempotency_key"),
        CheckConstraint(_in("state", ("running", "completed")), name="state"),
    )

    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default="running")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A request that died mid-flight releases its key when this passes, so the client can retry.
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Worker(Base):
    """Dispatcher heartbeats: the reaper judges a claimer dead by its silence here."""

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _created()
    heartbeat_at: Mapped[datetime] = _created()
    # Written by the worker with each heartbeat (heartbeat + its JEM_DISPATCHER_STALE_AFTER): every reaper judges
    # liveness by this stored expiry, never by its own configuration.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SendBudget(Base):
    """A token bucket per sending number, shared by every worker (the global send rate)."""

    __tablename__ = "send_budget"

    phone_number_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tokens: Mapped[float] = mapped_column(Double, server_default=text("0"))
    refilled_at: Mapped[datetime] = _created()
    # Sender-wide trouble (130429, 429, connection refused, DNS, TLS): everyone waits until then.
    backoff_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backoff_reason: Mapped[str | None] = mapped_column(Text)
    # Consecutive back-offs without a successful send in between: the next one waits twice as long.
    backoff_step: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Auth/config errors (190, 133010, 131031) pause all sending until an operator fixes the cause.
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_reason: Mapped[str | None] = mapped_column(Text)


class ServerSecret(Base):
    """Random keys the installation shares through its database, e.g. the one that authenticates our tracker in
    `biz_opaque_callback_data`: every process (serve, workers) agrees without any configuration."""

    __tablename__ = "server_secret"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


class EmployeeUserId(Base):
    """Business-scoped user ids (BSUIDs) learned for an employee, per sending number, with their history.

    A row is only ever written on proof (docs/whatsapp.md#business-scoped-user-ids): a status of our own send
    to that employee naming it, a send answer naming it, or a message carrying both the employee's number and
    it. A changed number or user id supersedes the old row instead of deleting it.
    """

    __tablename__ = "employee_user_id"
    __table_args__ = (
        UniqueConstraint("employee_id", "phone_number_id", "user_id", name="uq_employee_user_id_employee_number_user"),
        Index("ix_employee_user_id_current", "user_id", postgresql_where=text("superseded_at IS NULL")),
        CheckConstraint(_in("learned_from", ("status", "send", "message", "system")), name="learned_from"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"), index=True)
    # The number it was learned through: a BSUID is scoped to the business behind the number.
    phone_number_id: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    parent_user_id: Mapped[str | None] = mapped_column(Text)
    learned_from: Mapped[str] = mapped_column(Text)
    learned_at: Mapped[datetime] = _created()
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdentityChange(Base):
    """What Meta's system messages said about an employee: a changed number or user id (kept for history)."""

    __tablename__ = "identity_change"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employee.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(Text)
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    wamid: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = _created()


class Sender(Base):
    """An employer's own WhatsApp number. Without a row, the employer sends from the installation's number."""

    __tablename__ = "sender"

    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), primary_key=True)
    # One employer per number: a message to it belongs to that employer alone.
    phone_number_id: Mapped[str] = mapped_column(Text, unique=True)
    waba_id: Mapped[str] = mapped_column(Text)
    # Encrypted with a key derived from JEM_SECRET_KEY (bot/crypto.py); never returned, never logged.
    access_token: Mapped[bytes] = mapped_column(LargeBinary)
    access_token_hint: Mapped[str] = mapped_column(Text)
    rate: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class EmployerChoice(Base):
    """Someone employed at several employers on the shared number said which one they are writing to."""

    __tablename__ = "employer_choice"
    __table_args__ = (Index("ix_employer_choice_who", "phone", "user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    phone: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    phone_number_id: Mapped[str] = mapped_column(Text)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"))
    chosen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Template(Base):
    """One translation of a WhatsApp message template, as Graph listed it at the last sync of its account."""

    __tablename__ = "template"
    __table_args__ = (UniqueConstraint("waba_id", "name", "language", name="uq_template_waba_id_name_language"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    waba_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    # none, text, image, document, video
    header_format: Mapped[str] = mapped_column(Text)
    header_text: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_parameters: Mapped[int] = mapped_column(Integer)
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    synced_at: Mapped[datetime] = _created()


class TemplateSync(Base):
    """When a business account's catalogue was last read from Graph (it is read again hourly)."""

    __tablename__ = "template_sync"

    waba_id: Mapped[str] = mapped_column(Text, primary_key=True)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempted_at: Mapped[datetime] = _created()
    error: Mapped[str | None] = mapped_column(Text)
    templates: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class OptOutHash(Base):
    """An opt-out that outlives the employee's erasure: a keyed hash of the phone, never the phone itself."""

    __tablename__ = "opt_out_hash"

    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id", ondelete="CASCADE"), primary_key=True)
    phone_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    opted_out_at: Mapped[datetime] = _created()
