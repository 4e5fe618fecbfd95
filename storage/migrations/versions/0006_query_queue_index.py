"""The outbox index ends with the query id: ``(campaign_id, status, id)`` replaces
``(campaign_id, status)`` (its prefix, so every query that used the old one can use the new).

"A campaign's oldest pending queries" — a pull claim, a driver's dispatch — becomes an ordered
index scan that stops after LIMIT rows instead of sorting the whole queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_oracle_query_campaign_id_status_id", "oracle_query",
                    ["campaign_id", "status", "id"])
    op.drop_index("ix_oracle_query_campaign_id_status", table_name="oracle_query")


def downgrade() -> None:
    op.create_index("ix_oracle_query_campaign_id_status", "oracle_query",
                    ["campaign_id", "status"])
    op.drop_index("ix_oracle_query_campaign_id_status_id", table_name="oracle_query")
