"""The storage error hierarchy: every message names the field or object, its value and the remedy.

Callers catch :class:`StorageError` (or a subclass); raw SQLAlchemy / driver exceptions never
leave the package through the public API.
"""
from __future__ import annotations

from tiltloop.errors import TiltloopError


class StorageError(TiltloopError):
    """Base class of every error raised by :mod:`storage`."""


class InvalidDatabaseURL(StorageError):
    """A database URL that cannot be parsed or names an unsupported backend."""


class DatabaseUnreachable(StorageError):
    """The database server could not be reached or refused the connection."""


class SchemaError(StorageError):
    """The database schema is missing, older or newer than this version of tiltloop."""


class SchemaNotInitialized(SchemaError):
    """The database has no tiltloop tables yet (run ``tiltloop db upgrade``)."""


class SchemaOutOfDate(SchemaError):
    """The database is at an older migration revision than this tiltloop needs."""


class SchemaTooNew(SchemaError):
    """The database is at a revision this tiltloop does not know (a newer release wrote it)."""


class InvalidValue(StorageError, ValueError):
    """An argument of the repository API is malformed (the message names the field)."""


class NotFound(StorageError, LookupError):
    """A campaign, round or query that the caller named does not exist."""


class CampaignExists(StorageError):
    """A campaign with this name already exists (load it to resume instead)."""


class ConfigVersionConflict(StorageError):
    """Another writer added the same config version first (reload the config and retry)."""


class CampaignBusy(StorageError):
    """The operation would drop queries that are still in flight at the oracle."""


class RoundConflict(StorageError):
    """A round index is already written with different content, or cannot be discarded."""


class InvalidTransition(StorageError):
    """A query state transition that the lifecycle does not allow."""


class JobIdConflict(StorageError):
    """A query already has a different external job id stored."""


class InvalidScope(InvalidValue):
    """An API token scope that is not ``admin``, ``read`` or ``lab:<campaign-name>``."""


class WorkNotHeld(StorageError):
    """A pull-API report for a query this client does not hold (claimed by another client since
    its lease expired, never claimed, or already reported with a different result)."""


class IntegrityViolation(StorageError):
    """The database refused a write (unique key, foreign key or check constraint)."""


class DatabaseError(StorageError):
    """Any other database failure, mapped from the driver (the message keeps its text)."""
