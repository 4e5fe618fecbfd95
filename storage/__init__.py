"""tiltloop's persistent store: campaigns, rounds, candidates, oracle queries and an audit log.

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
)
from storage.migrate import check_schema, current, downgrade, head_revision, upgrade
from storage.records import (
    IN_FLIGHT,
    TERMINAL,
    CampaignRecord,
    CandidateRecord,
    ConfigVersionRecord,
    EventRecord,
    History,
    NewCandidate,
    QueryRecord,
    RoundRecord,
)
from storage.rounds import query_key
from storage.store import Storage, open_storage

__all__ = [
    "IN_FLIGHT", "TERMINAL", "CampaignBusy", "CampaignExists", "CampaignRecord", "CandidateRecord",
    "ConfigVersionConflict", "ConfigVersionRecord",
    "DatabaseError", "DatabaseUnreachable", "EventRecord", "History", "IntegrityViolation",
    "InvalidDatabaseURL", "InvalidTransition", "InvalidValue", "JobIdConflict", "NewCandidate",
    "NotFound", "QueryRecord", "RoundConflict", "RoundRecord", "SchemaError",
    "SchemaNotInitialized", "SchemaOutOfDate", "SchemaTooNew", "Storage", "StorageError",
    "check_schema", "current", "downgrade", "head_revision", "open_storage", "query_key",
    "upgrade",
]
