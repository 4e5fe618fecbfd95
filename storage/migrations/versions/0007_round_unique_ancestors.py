"""How many founders a round's final particles descend from: column ``round.unique_ancestors``.

SMC resampling collapses lineages; the count of distinct initial particles (founders) left among
the final ones, summed over the round's chunks (each chunk has its own founders), shows how much
diversity a round kept. NULL for rounds written before this revision (or by a writer that did not
track lineage).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("round") as batch:
        batch.add_column(sa.Column("unique_ancestors", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round") as batch:
        batch.drop_column("unique_ancestors")
