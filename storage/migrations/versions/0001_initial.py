"""Initial schema: campaign, round, candidate, oracle_query.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("budget", sa.Integer(), nullable=True),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'completed', 'failed', 'archived')",
            name=op.f("ck_campaign_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("name", name=op.f("uq_campaign_name")),
    )
    op.create_table(
        "round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("oracle_name", sa.String(200), nullable=True),
        sa.Column("surrogate_state", JSONType, nullable=True),
        sa.Column("surrogate_blob", sa.LargeBinary(), nullable=True),
        sa.Column("timings", JSONType, nullable=True),
        sa.Column("summary", JSONType, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'complete', 'failed')", name=op.f("ck_round_status")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_round_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round")),
        sa.UniqueConstraint(
            "campaign_id", "round_index", name=op.f("uq_round_campaign_id_round_index")
        ),
    )
    op.create_table(
        "candidate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("candidate_index", sa.Integer(), nullable=False),
        sa.Column("design", sa.LargeBinary(), nullable=False),
        sa.Column("design_dtype", sa.String(32), nullable=False),
        sa.Column("design_shape", JSONType, nullable=False),
        sa.Column("design_hash", sa.String(64), nullable=False),
        sa.Column("features", sa.LargeBinary(), nullable=True),
        sa.Column("log_weight", sa.Float(), nullable=True),
        sa.Column("group_index", sa.Integer(), nullable=True),
        sa.Column("particle_index", sa.Integer(), nullable=True),
        sa.Column("surrogate_mean", sa.Float(), nullable=True),
        sa.Column("surrogate_std", sa.Float(), nullable=True),
        sa.Column("acquisition", sa.Float(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"], ["round.id"], name=op.f("fk_candidate_round_id_round"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate")),
        sa.UniqueConstraint(
            "round_id", "candidate_index", name=op.f("uq_candidate_round_id_candidate_index")
        ),
    )
    op.create_index(op.f("ix_candidate_design_hash"), "candidate", ["design_hash"])
    op.create_table(
        "oracle_query",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        sa.Column("oracle_name", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("external_job_id", sa.String(512), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result_values", JSONType, nullable=True),
        sa.Column("noise", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.Column("dispatched_at", Timestamp, nullable=True),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'dispatched', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_oracle_query_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_oracle_query_attempts")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_oracle_query_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidate.id"],
            name=op.f("fk_oracle_query_candidate_id_candidate"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oracle_query")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_oracle_query_idempotency_key")),
    )
    op.create_index(
        op.f("ix_oracle_query_campaign_id_status"), "oracle_query", ["campaign_id", "status"]
    )
    op.create_index(op.f("ix_oracle_query_candidate_id"), "oracle_query", ["candidate_id"])
    op.create_index(
        op.f("ix_oracle_query_external_job_id"), "oracle_query", ["external_job_id"]
    )


def downgrade() -> None:
    op.drop_table("oracle_query")
    op.drop_table("candidate")
    op.drop_table("round")
    op.drop_table("campaign")
