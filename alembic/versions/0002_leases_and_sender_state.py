"""leases, claim counter, sender back-off state, worker expiry, server secrets, delivery_rank()

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:00:00

The fault model of docs/architecture.md#fault-model: every claim carries its lease (`delivery.lease_until`)
and a never-decreasing claim number (`delivery.claims`); a worker stores its own liveness expiry; the sender's
back-off remembers why and how often; the tracker we put in `biz_opaque_callback_data` is keyed by a secret
kept in `server_secret`. `delivery_rank()` is the one definition of the forward-only status order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Statuses Meta reports move a delivery forward only: sent < delivered < read; failed is terminal. Rows that were
# never accepted (pending, sending, unknown) rank lowest; cancelled and skipped are never moved by a status.
DELIVERY_RANK = """
CREATE OR REPLACE FUNCTION delivery_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END
$$
"""


def upgrade() -> None:
    op.add_column("delivery", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("delivery", sa.Column("claims", sa.Integer(), server_default=sa.text("0"), nullable=False))
    # Rows being sent when this migration runs were claimed under the old rules: their claims count once.
    op.execute("UPDATE delivery SET claims = attempts")
    op.create_index(
        "ix_delivery_sending_lease_until",
        "delivery",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.add_column("worker", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("send_budget", sa.Column("backoff_reason", sa.Text(), nullable=True))
    op.add_column("send_budget", sa.Column("backoff_step", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.create_index("ix_inbound_message_received_at", "inbound_message", ["received_at"], unique=False)
    op.create_table(
        "server_secret",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secret")),
    )
    op.execute(DELIVERY_RANK)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS delivery_rank(text)")
    op.drop_table("server_secret")
    op.drop_index("ix_inbound_message_received_at", table_name="inbound_message")
    op.drop_column("send_budget", "backoff_step")
    op.drop_column("send_budget", "backoff_reason")
    op.drop_column("worker", "expires_at")
    op.drop_index(
        "ix_delivery_sending_lease_until", table_name="delivery", postgresql_where=sa.text("status = 'sending'")
    )
    op.drop_column("delivery", "claims")
    op.drop_column("delivery", "lease_until")
