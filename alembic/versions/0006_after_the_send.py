"""reminders, opt-outs that survive erasure, erased employees, operator replies

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 05:30:00

A reminder is an announcement of its own (`reminder_of`), its audience frozen at fan-out from the original's
reached-but-unacknowledged employees; `remind_after_seconds` makes one automatically, once (`auto_reminder`,
unique per original). An erased employee keeps their ledger rows, anonymised (`erased_at`); their opt-out
survives as a keyed hash of the phone (`opt_out_hash`), so a later re-import does not message them.
Operator replies are ledger replies keyed `op:<employee id>:…`; two indexes serve conversations and the inbox's
`answered`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("announcement", sa.Column("reminder_of", sa.BigInteger(), nullable=True))
    op.add_column("announcement", sa.Column("remind_after_seconds", sa.Integer(), nullable=True))
    op.add_column(
        "announcement", sa.Column("auto_reminder", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.create_foreign_key(
        op.f("fk_announcement_reminder_of_announcement"),
        "announcement",
        "announcement",
        ["reminder_of"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_announcement_reminder_of", "announcement", ["reminder_of"], unique=False)
    # `remind_after` makes its reminder once, whatever races: one automatic reminder per original.
    op.create_index(
        "uq_announcement_auto_reminder",
        "announcement",
        ["reminder_of"],
        unique=True,
        postgresql_where=sa.text("auto_reminder"),
    )
    op.add_column("employee", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "opt_out_hash",
        sa.Column("employer_id", sa.BigInteger(), nullable=False),
        sa.Column("phone_hash", sa.LargeBinary(), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["employer_id"], ["employer.id"], name=op.f("fk_opt_out_hash_employer_id_employer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("employer_id", "phone_hash", name=op.f("pk_opt_out_hash")),
    )
    # Conversations (GET /employees/{id}/messages): one employee's messages, newest first, and the 24-hour window.
    op.create_index("ix_inbound_message_employee_id_id", "inbound_message", ["employee_id", "id"], unique=False)
    # Operator replies (POST /employees/{id}/messages) are the replies keyed `op:…`: the inbox's `answered` looks
    # for one to the employee after each message without reading the employee's other deliveries.
    op.create_index(
        "ix_delivery_operator_reply",
        "delivery",
        ["employee_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("reply_key LIKE 'op:%'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_delivery_operator_reply", table_name="delivery", postgresql_where=sa.text("reply_key LIKE 'op:%'")
    )
    op.drop_index("ix_inbound_message_employee_id_id", table_name="inbound_message")
    op.drop_table("opt_out_hash")
    op.drop_column("employee", "erased_at")
    op.drop_index("uq_announcement_auto_reminder", table_name="announcement", postgresql_where=sa.text("auto_reminder"))
    op.drop_index("ix_announcement_reminder_of", table_name="announcement")
    op.drop_constraint(op.f("fk_announcement_reminder_of_announcement"), "announcement", type_="foreignkey")
    op.drop_column("announcement", "auto_reminder")
    op.drop_column("announcement", "remind_after_seconds")
    op.drop_column("announcement", "reminder_of")
