"""template catalogue, languages, template announcements

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 05:10:00

Announcements may name an approved WhatsApp template (docs/architecture.md#templates): `template` holds each
business account's catalogue as Graph listed it at the last sync (`template_sync`). Employees and employers get
an optional language; each delivery records the language it was sent in and Meta's `message_status` (pacing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "template",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("waba_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("header_format", sa.Text(), nullable=False),
        sa.Column("header_text", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_parameters", sa.Integer(), nullable=False),
        sa.Column("buttons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("components", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template")),
        sa.UniqueConstraint("waba_id", "name", "language", name="uq_template_waba_id_name_language"),
    )
    op.create_table(
        "template_sync",
        sa.Column("waba_id", sa.Text(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("templates", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("waba_id", name=op.f("pk_template_sync")),
    )
    op.add_column("employee", sa.Column("language", sa.Text(), nullable=True))
    op.add_column("employer", sa.Column("language", sa.Text(), nullable=True))
    op.add_column("announcement", sa.Column("template", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("delivery", sa.Column("language", sa.Text(), nullable=True))
    op.add_column("delivery", sa.Column("message_status", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("delivery", "message_status")
    op.drop_column("delivery", "language")
    op.drop_column("announcement", "template")
    op.drop_column("employer", "language")
    op.drop_column("employee", "language")
    op.drop_table("template_sync")
    op.drop_table("template")
