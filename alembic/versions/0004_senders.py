"""employers' own numbers (sender), the number each delivery and message used, the shared number's question

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 04:20:00

Each employer may send from its own WhatsApp number (docs/architecture.md#several-numbers): `sender` holds it
(the access token encrypted); a delivery records the number it went out from, a message the number it was
written to; on the shared number, a message from someone employed at several employers is held until they say
which employer it is for (`employer_choice`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The number a waiting delivery goes out from, as things stand now: an announcement from its employer's own
# number; a reply from the own number the employee wrote to, while it is still its employer's; NULL for the
# shared number. Every statement that makes a row `pending` (fan-out, a retry, a resend...) stores this in
# `delivery.phone_number_id`, so each number's claim is an index scan of its own rows
# (docs/architecture.md#several-numbers).
DELIVERY_ROUTE = """
CREATE OR REPLACE FUNCTION delivery_route(kind text, employer bigint, wrote text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT s.phone_number_id FROM sender s
  WHERE s.employer_id = employer AND (kind <> 'reply' OR s.phone_number_id = wrote)
$$
"""


def upgrade() -> None:
    op.create_table(
        "sender",
        sa.Column("employer_id", sa.BigInteger(), nullable=False),
        sa.Column("phone_number_id", sa.Text(), nullable=False),
        sa.Column("waba_id", sa.Text(), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=False),
        sa.Column("access_token_hint", sa.Text(), nullable=False),
        sa.Column("rate", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["employer_id"], ["employer.id"], name=op.f("fk_sender_employer_id_employer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("employer_id", name=op.f("pk_sender")),
        sa.UniqueConstraint("phone_number_id", name=op.f("uq_sender_phone_number_id")),
    )
    op.create_table(
        "employer_choice",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("phone_number_id", sa.Text(), nullable=False),
        sa.Column("employer_id", sa.BigInteger(), nullable=False),
        sa.Column("chosen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["employer_id"], ["employer.id"], name=op.f("fk_employer_choice_employer_id_employer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employer_choice")),
    )
    op.create_index("ix_employer_choice_who", "employer_choice", ["phone", "user_id"], unique=False)
    op.add_column("delivery", sa.Column("phone_number_id", sa.Text(), nullable=True))
    op.add_column("delivery", sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("inbound_message", sa.Column("phone_number_id", sa.Text(), nullable=True))
    op.add_column("inbound_message", sa.Column("held", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_index(
        "ix_delivery_pending_route",
        "delivery",
        [sa.text("COALESCE(phone_number_id, '')"), "next_attempt_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.execute(DELIVERY_ROUTE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS delivery_route(text, bigint, text)")
    op.drop_index("ix_delivery_pending_route", table_name="delivery", postgresql_where=sa.text("status = 'pending'"))
    op.drop_column("inbound_message", "held")
    op.drop_column("inbound_message", "phone_number_id")
    op.drop_column("delivery", "payload")
    op.drop_column("delivery", "phone_number_id")
    op.drop_index("ix_employer_choice_who", table_name="employer_choice")
    op.drop_table("employer_choice")
    op.drop_table("sender")
