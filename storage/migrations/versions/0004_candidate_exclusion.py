"""Why a candidate was left out of screening: column ``candidate.excluded_reason``.

Screening drops candidates that duplicate a trained, queried, pending or earlier design
(``optimizer.surrogate.dedup``); the reason ("observed", "queried", "pending", "candidate")
is now stored with the candidate instead of only a per-round note.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidate") as batch:
        batch.add_column(sa.Column("excluded_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("candidate") as batch:
        batch.drop_column("excluded_reason")
