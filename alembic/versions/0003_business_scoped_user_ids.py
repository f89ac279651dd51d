"""business-scoped user ids (BSUIDs) learned per employee, identity changes, messages without a number

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 04:10:00

WhatsApp usernames (docs/whatsapp.md#business-scoped-user-ids): a user may write without their number, known
only by a BSUID. `employee_user_id` keeps the BSUIDs learned for an employee (on proof only, with history);
`identity_change` keeps what Meta's system messages said; an inbound message may have no number; a reply to
someone who wrote without their number goes to their BSUID.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "employee_user_id",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("employee_id", sa.BigInteger(), nullable=False),
        sa.Column("phone_number_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("parent_user_id", sa.Text(), nullable=True),
        sa.Column("learned_from", sa.Text(), nullable=False),
        sa.Column("learned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "learned_from IN ('status', 'send', 'message', 'system')",
            name=op.f("ck_employee_user_id_learned_from"),
        ),
        sa.ForeignKeyConstraint(
            ["employee_id"], ["employee.id"], name=op.f("fk_employee_user_id_employee_id_employee"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_employee_user_id")),
        sa.UniqueConstraint(
            "employee_id", "phone_number_id", "user_id", name="uq_employee_user_id_employee_number_user"
        ),
    )
    op.create_index(op.f("ix_employee_user_id_employee_id"), "employee_user_id", ["employee_id"], unique=False)
    op.create_index(
        "ix_employee_user_id_current",
        "employee_user_id",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("superseded_at IS NULL"),
    )
    op.create_table(
        "identity_change",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("employee_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("wamid", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["employee_id"], ["employee.id"], name=op.f("fk_identity_change_employee_id_employee"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_change")),
    )
    op.create_index(op.f("ix_identity_change_employee_id"), "identity_change", ["employee_id"], unique=False)
    op.alter_column("inbound_message", "from_phone", existing_type=sa.Text(), nullable=True)
    op.add_column("inbound_message", sa.Column("from_user_id", sa.Text(), nullable=True))
    op.add_column("delivery", sa.Column("recipient_user_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery", "recipient_user_id")
    op.drop_column("inbound_message", "from_user_id")
    op.execute("DELETE FROM inbound_message WHERE from_phone IS NULL")
    op.alter_column("inbound_message", "from_phone", existing_type=sa.Text(), nullable=False)
    op.drop_index(op.f("ix_identity_change_employee_id"), table_name="identity_change")
    op.drop_table("identity_change")
    op.drop_index(
        "ix_employee_user_id_current", table_name="employee_user_id", postgresql_where=sa.text("superseded_at IS NULL")
    )
    op.drop_index(op.f("ix_employee_user_id_employee_id"), table_name="employee_user_id")
    op.drop_table("employee_user_id")
