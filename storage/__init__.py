"""tiltloop's persistent store: campaigns, rounds, candidates, oracle queries, an audit log, and
the service's campaign leases, hashed API tokens and pull-API claims.

Postgres (``postgresql+psycopg://``) in production, SQLite (``sqlite:///PATH``) embedded.
Imports nothing of ``optimizer`` or ``oracles``.
"""
from storage.errors import (
    CampaignBusy,
    CampaignExists,
    ConfigVersionConflict,
    DatabaseError,
    DatabaseUnreachable,
    IntegrityViolation,
    InvalidDatabaseURL,
    InvalidScope,
    InvalidTransition,
    InvalidValue,
    JobIdConflict,
    NotFound,
    RoundConflict,
    SchemaError,
    SchemaNotInitialized,
    SchemaOutOfDate,
    SchemaTooNew,
    StorageError,
    WorkNotHeld,
)
from storage.columns import HistoryColumns
from storage.migrate import check_schema, current, downgrade, head_revision, upgrade
from storage.records import (
    IN_FLIGHT,
    TERMINAL,
    CampaignRecord,
    CandidateRecord,
    ConfigVersionRecord,
    EventRecord,
    History,
    LeaseRecord,
    NewCandidate,
    QueryPoint,
    QueryRecord,
    RoundRecord,
    TokenRecord,
)
from storage.rounds import query_key
from storage.store import Storage, open_storage

__all__ = [
    "IN_FLIGHT", "TERMINAL", "CampaignBusy", "CampaignExists", "CampaignRecord", "CandidateRecord",
    "ConfigVersionConflict", "ConfigVersionRecord",
    "DatabaseError", "DatabaseUnreachable", "EventRecord", "History", "HistoryColumns", "IntegrityViolation",
    "InvalidDatabaseURL", "InvalidScope", "InvalidTransition", "InvalidValue", "JobIdConflict",
    "LeaseRecord", "NewCandidate",
    "NotFound", "QueryPoint",
    "QueryRecord", "RoundConflict", "RoundRecord", "SchemaError",
    "SchemaNotInitialized", "SchemaOutOfDate", "SchemaTooNew", "Storage", "StorageError",
    "TokenRecord", "WorkNotHeld",
    "check_schema", "current", "downgrade", "head_revision", "open_storage", "query_key",
    "upgrade",
]
