"""Append-only event log (UPDATE and DELETE refused by triggers); query leases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_event_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index(op.f("ix_event_campaign_id_id"), "event", ["campaign_id", "id"])
    _append_only_triggers()
    with op.batch_alter_table("oracle_query") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", Timestamp, nullable=True))


def _append_only_triggers() -> None:
    # The audit log is enforced by the database itself, not only by the API having no update.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tiltloop_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the event log is append-only: % on event refused', TG_OP; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event "
            "FOR EACH ROW EXECUTE FUNCTION tiltloop_event_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER event_no_{verb.lower()} BEFORE {verb} ON event BEGIN "
                f"SELECT RAISE(ABORT, 'the event log is append-only: {verb} on event refused'); "
                f"END"
            )


def downgrade() -> None:
    with op.batch_alter_table("oracle_query") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
    op.drop_index(op.f("ix_event_campaign_id_id"), table_name="event")
    op.drop_table("event")  # drops its triggers too
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION tiltloop_event_append_only()")
