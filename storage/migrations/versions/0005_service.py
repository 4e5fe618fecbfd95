"""The service's tables: campaign leases, hashed API tokens, pull-API claims.

- ``campaign_lease``: one row per campaign naming the replica (or CLI run) that drives it;
- ``api_token``: service API tokens, stored as salted scrypt hashes only;
- ``pull_claim`` and ``oracle_query.pull_claim_id``: claims of the pull API, so a retried claim
  returns the same queries, and a query dispatched to a lab client can be told from one
  dispatched by a driver.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign_lease",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_lease_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_lease")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_campaign_lease_campaign_id")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(255), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_token_prefix")),
    )
    op.create_table(
        "pull_claim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("query_keys", JSONType, nullable=False),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_pull_claim_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_claim")),
        sa.UniqueConstraint("campaign_id", "client_id", "request_id",
                            name=op.f("uq_pull_claim_campaign_id_client_id_request_id")),
    )
    with op.batch_alter_table("oracle_query") as batch:
        batch.add_column(sa.Column("pull_claim_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_oracle_query_pull_claim_id_pull_claim"), "pull_claim",
            ["pull_claim_id"], ["id"], ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_oracle_query_pull_claim_id"), ["pull_claim_id"])


def downgrade() -> None:
    with op.batch_alter_table("oracle_query") as batch:
        batch.drop_index(op.f("ix_oracle_query_pull_claim_id"))
        batch.drop_constraint(op.f("fk_oracle_query_pull_claim_id_pull_claim"),
                              type_="foreignkey")
        batch.drop_column("pull_claim_id")
    op.drop_table("pull_claim")
    op.drop_table("api_token")
    op.drop_table("campaign_lease")
