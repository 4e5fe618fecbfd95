"""Campaign config versions, the round's config version, the 'cancelled' campaign status, and
events that may be deleted together with their campaign (and only then).

1. table ``campaign_config`` (one row per version, unique ``(campaign_id, version)``);
2. column ``round.config_version`` (nullable);
3. the campaign status CHECK gains ``'cancelled'`` (SQLite: the table is rebuilt by batch mode,
   with foreign keys switched off by :mod:`storage.migrate` so no child row is cascaded away);
4. data: every existing campaign gets version 1 = its current config, its rounds version 1;
5. the append-only triggers on ``event`` refuse UPDATE always and DELETE only while the event's
   campaign exists, so deleting a campaign (ON DELETE CASCADE) removes its log with it.

Downgrade undoes each step; it refuses while a campaign is 'cancelled' (revision 0002 cannot
store that status) and says how to proceed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from storage.errors import InvalidValue

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

_OLD_STATUSES = "status IN ('active', 'paused', 'completed', 'failed', 'archived')"
_NEW_STATUSES = "status IN ('active', 'paused', 'completed', 'failed', 'archived', 'cancelled')"

_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION tiltloop_event_append_only() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN {guard}RAISE EXCEPTION 'the event log is append-only: % on event refused', "
    "TG_OP; END $$"
)
# DELETE passes only once the campaign row is gone (its ON DELETE CASCADE, or delete_campaign).
_PG_GUARD = (
    "IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM campaign WHERE id = OLD.campaign_id) "
    "THEN RETURN OLD; END IF; "
)


def _sqlite_delete_trigger(guarded: bool) -> str:
    when = " WHEN EXISTS (SELECT 1 FROM campaign WHERE id = OLD.campaign_id)" if guarded else ""
    return (
        f"CREATE TRIGGER event_no_delete BEFORE DELETE ON event{when} BEGIN "
        f"SELECT RAISE(ABORT, 'the event log is append-only: DELETE on event refused'); END"
    )


def _set_event_triggers(guarded: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION.format(guard=_PG_GUARD if guarded else ""))
    else:
        op.execute("DROP TRIGGER event_no_delete")
        op.execute(_sqlite_delete_trigger(guarded))


def _set_status_check(expression: str) -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_constraint(op.f("ck_campaign_status"), type_="check")
        batch.create_check_constraint(op.f("ck_campaign_status"), expression)


def upgrade() -> None:
    op.create_table(
        "campaign_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_campaign_config_version")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_config_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_config")),
        sa.UniqueConstraint(
            "campaign_id", "version", name=op.f("uq_campaign_config_campaign_id_version")
        ),
    )
    with op.batch_alter_table("round") as batch:
        batch.add_column(sa.Column("config_version", sa.Integer(), nullable=True))
    _set_status_check(_NEW_STATUSES)
    op.execute(
        "INSERT INTO campaign_config (campaign_id, version, config, note) "
        "SELECT id, 1, config, 'version 1: the config when migration 0003 ran' FROM campaign"
    )
    op.execute("UPDATE round SET config_version = 1")
    _set_event_triggers(guarded=True)


def downgrade() -> None:
    cancelled = op.get_bind().execute(
        sa.text("SELECT name FROM campaign WHERE status = 'cancelled' ORDER BY id")
    ).scalars().all()
    if cancelled:
        names = ", ".join(repr(n) for n in cancelled)
        raise InvalidValue(
            f"cannot downgrade to revision 0002: campaign(s) {names} have status 'cancelled', "
            f"which 0002 cannot store; set another status (update_campaign(name, "
            f"status='archived')) or delete them (delete_campaign(name)), then downgrade again"
        )
    _set_event_triggers(guarded=False)
    _set_status_check(_OLD_STATUSES)
    with op.batch_alter_table("round") as batch:
        batch.drop_column("config_version")
    op.drop_table("campaign_config")
