"""SQLAlchemy 2 typed models: campaign → round → candidate → oracle query, plus the campaign's
config versions and the event log.

Natural keys are unique constraints (campaign name, config version per campaign, round index per
campaign, candidate index per round, query idempotency key). Statuses are text with CHECK
constraints. Designs and features are npy bytes (never pickle); configs, results and snapshots are
JSON. Every hot query has an index:

- claim / in-flight scan: ``oracle_query (campaign_id, status)``;
- transition / job-id update: unique ``oracle_query (idempotency_key)``;
- history: ``oracle_query (campaign_id, status)`` joined to ``candidate`` by primary key;
- rounds of a campaign, candidates of a round: their unique constraints.

The Alembic migrations in ``storage/migrations`` must produce exactly this schema (a test runs
autogenerate against the migrated database and requires no difference).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: JSON column: JSONB on Postgres (indexable, compact), JSON text elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(sa.types.TypeDecorator):
    """``TIMESTAMP WITH TIME ZONE``; values come back timezone-aware (UTC) on every backend.

    SQLite has no time zones: the database clock writes UTC there, so naive values read back
    are tagged UTC, and the API returns the same kind of datetime as on Postgres.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        # psycopg returns aware datetimes for timestamptz: no per-value call on Postgres (five
        # timestamps a query row: a visible part of a 100,000-query history load)
        if dialect.name == "postgresql":
            return self.impl_instance.result_processor(dialect, coltype)
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


Timestamp = UTCDateTime()

CAMPAIGN_STATUSES = ("active", "paused", "completed", "failed", "archived", "cancelled")
ROUND_STATUSES = ("open", "complete", "failed")
QUERY_STATUSES = ("pending", "dispatched", "running", "succeeded", "failed", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints the same way."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Campaign(Base):
    """One design campaign: a unique name, its current config and an optional query budget.

    ``config`` is always the latest row of :class:`CampaignConfig` (written in the same
    transaction), so a resume reads one row; the older versions stay in ``campaign_config``.
    """

    __tablename__ = "campaign"
    __table_args__ = (sa.CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    budget: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


class CampaignConfig(Base):
    """One version of a campaign's config: versions 1, 2, ... per campaign, never rewritten."""

    __tablename__ = "campaign_config"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "version"),
        sa.CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


class Round(Base):
    """One generation round: α, the surrogate snapshot it used, timings and summary statistics."""

    __tablename__ = "round"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "round_index"),
        sa.CheckConstraint(_in("status", ROUND_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    round_index: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    alpha: Mapped[float] = mapped_column(sa.Float)
    oracle_name: Mapped[str | None] = mapped_column(sa.String(200))
    # The surrogate's state: JSON metadata plus an optional safetensors blob (never pickle).
    surrogate_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    surrogate_blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The campaign config version the round was generated with (NULL: written before 0003).
    config_version: Mapped[int | None] = mapped_column(sa.Integer)
    # Distinct founders of the final particles, summed over chunks (NULL: written before 0007).
    unique_ancestors: Mapped[int | None] = mapped_column(sa.Integer)
    # sha256 over everything the round was written with: an identical re-write is a no-op.
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


class Candidate(Base):
    """Every particle a round produced, selected for the oracle or screened out."""

    __tablename__ = "candidate"
    __table_args__ = (sa.UniqueConstraint("round_id", "candidate_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(sa.ForeignKey("round.id", ondelete="CASCADE"))
    candidate_index: Mapped[int] = mapped_column(sa.Integer)
    design: Mapped[bytes] = mapped_column(sa.LargeBinary)  # npy bytes, allow_pickle=False
    design_dtype: Mapped[str] = mapped_column(sa.String(32))
    design_shape: Mapped[list[int]] = mapped_column(JSONType)
    design_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    features: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # npy bytes
    log_weight: Mapped[float | None] = mapped_column(sa.Float)
    group_index: Mapped[int | None] = mapped_column(sa.Integer)
    particle_index: Mapped[int | None] = mapped_column(sa.Integer)
    surrogate_mean: Mapped[float | None] = mapped_column(sa.Float)
    surrogate_std: Mapped[float | None] = mapped_column(sa.Float)
    acquisition: Mapped[float | None] = mapped_column(sa.Float)
    #: why screening left it out: a duplicate of an "observed" (trained), "queried" or
    #: "pending" design or of an earlier "candidate"; None when it was eligible
    excluded_reason: Mapped[str | None] = mapped_column(sa.String(64))
    selected: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class OracleQuery(Base):
    """One oracle query (the outbox row): committed before dispatch, updated conditionally."""

    __tablename__ = "oracle_query"
    __table_args__ = (
        sa.CheckConstraint(_in("status", QUERY_STATUSES), name="status"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
        # id last: "the oldest pending of a campaign" is an ordered index scan that stops at
        # LIMIT (a pull claim with 30,000 queued sorted them all: 17 ms of Postgres per claim)
        sa.Index(None, "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(
        sa.ForeignKey("candidate.id", ondelete="CASCADE"), index=True
    )
    oracle_name: Mapped[str] = mapped_column(sa.String(200))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    external_job_id: Mapped[str | None] = mapped_column(sa.String(512), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    result_values: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # objective -> value
    noise: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # objective -> noise variance
    error: Mapped[str | None] = mapped_column(sa.Text)  # unbounded: full failure reason
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    dispatched_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: the pull claim that dispatched it (None: dispatched by a campaign driver, or never);
    #: only these are handed out again by the pull API once their lease expires
    pull_claim_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("pull_claim.id", ondelete="SET NULL"), index=True
    )


class Event(Base):
    """The append-only audit log: who (actor) did what (kind, payload) when (database clock)."""

    __tablename__ = "event"
    __table_args__ = (sa.Index(None, "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


class CampaignLease(Base):
    """Who drives a campaign: at most one row per campaign, timed by the database clock.

    A lease is live while ``expires_at`` is in the future (database time); an expired lease may
    be taken over by anyone. Written only by conditional statements (see :mod:`storage.leases`).
    """

    __tablename__ = "campaign_lease"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaign.id", ondelete="CASCADE"), unique=True
    )
    owner: Mapped[str] = mapped_column(sa.String(200))
    acquired_at: Mapped[datetime] = mapped_column(Timestamp)
    heartbeat_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class ApiToken(Base):
    """An API token of the service: only a salted scrypt hash of the secret is stored.

    ``prefix`` (the secret's first characters, unique) finds the row and names the token in
    listings; ``scopes`` is a JSON list such as ``["admin"]``, ``["read", "lab:c1"]``.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(255), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class PullClaim(Base):
    """One claim of the pull API: (campaign, client, client request id) -> the query keys it
    returned, so a retried request gets the same items back."""

    __tablename__ = "pull_claim"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "client_id", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(sa.String(200))
    request_id: Mapped[str] = mapped_column(sa.String(200))
    query_keys: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())


# Core tables of the hot paths: an UPDATE / INSERT on the Table skips the ORM's bulk-persistence
# layer (about a third of a claim's CPU), with the same columns and the same SQL.
QUERY_TABLE: sa.Table = OracleQuery.__table__  # type: ignore[assignment]
EVENT_TABLE: sa.Table = Event.__table__  # type: ignore[assignment]
