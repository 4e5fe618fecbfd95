"""Schema migrations (Alembic, shipped in ``storage/migrations``) and the start-up schema check.

``tiltloop db upgrade|downgrade|current`` call these; :func:`check_schema` is what
:meth:`storage.Storage.open` runs, so a database at an older revision is refused up front with
the command that fixes it, instead of failing deep inside a query.

>>> upgrade("sqlite:///tiltloop.db")
>>> current("sqlite:///tiltloop.db") == head_revision()
True
"""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from storage.engine import create_engine, describe_unreachable, map_dbapi_error, redact
from storage.errors import (
    DatabaseError,
    DatabaseUnreachable,
    InvalidValue,
    SchemaNotInitialized,
    SchemaOutOfDate,
    SchemaTooNew,
)

_SCRIPT_LOCATION = "storage:migrations"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this tiltloop."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


#: Postgres advisory lock key serialising concurrent ``db upgrade`` runs (b"tiltloop").
_MIGRATION_LOCK = 0x74696C746C6F6F70 - (1 << 63)


def _sqlite_foreign_keys(conn: Connection, on: bool) -> None:
    # Outside any transaction (the pragma is a no-op inside one): straight on the driver.
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection always has its driver connection
    driver.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _check_foreign_keys(conn: Connection, where: str) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise DatabaseError(
            f"migration of database {where!r} left {len(broken)} row(s) with a dangling foreign "
            f"key in {', '.join(tables)}; rolled back, nothing changed (report this as a bug)"
        )


def _run(url: str | URL, action: str, revision: str) -> tuple[str | None, str | None]:
    """Run an Alembic command in one transaction.

    SQLite: foreign keys are switched off for the migration connection (the SQLite-documented
    way to rebuild a table: batch mode drops and re-creates it, and with enforcement on the
    implicit DELETE of that DROP would cascade to every child row), then checked with
    ``PRAGMA foreign_key_check`` before the commit.
    """
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                _sqlite_foreign_keys(conn, on=False)
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        # Two services starting at once: the second waits, then finds nothing
                        # to do.
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": _MIGRATION_LOCK})
                    before = _revision_of(conn)
                    cfg = _config(conn)
                    try:
                        getattr(command, action)(cfg, revision)
                    except CommandError as exc:
                        raise InvalidValue(
                            f"cannot {action} database {redact(engine.url)!r} to revision "
                            f"{revision!r}: {exc}; known revisions: "
                            f"{', '.join(known_revisions())} (or 'base'/'head')"
                        ) from None
                    if sqlite:
                        _check_foreign_keys(conn, redact(engine.url))
                    after = _revision_of(conn)
            finally:
                if sqlite:
                    _sqlite_foreign_keys(conn, on=True)
    except DBAPIError as exc:
        raise map_dbapi_error(engine.url, exc, doing=f"db {action} to {revision}") from None
    finally:
        engine.dispose()
    return before, after


def upgrade(url: str | URL, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database at ``url`` up to ``revision``; returns (revision before, after)."""
    return _run(url, "upgrade", revision)


def downgrade(url: str | URL, revision: str) -> tuple[str | None, str | None]:
    """Migrate the database at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    return _run(url, "downgrade", revision)


def current(url: str | URL) -> str | None:
    """The database's migration revision, or ``None`` for a database with no tiltloop schema."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return _revision_of(conn)
    except DBAPIError as exc:
        raise DatabaseUnreachable(describe_unreachable(engine.url, exc)) from None
    finally:
        engine.dispose()


def known_revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def upgrade_hint(url: str | URL) -> str:
    """The exact command that brings the database at ``url`` to the head revision."""
    return f"tiltloop db upgrade --url '{redact(url)}'"


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is missing, older or newer than this tiltloop's head.

    Raises:
        SchemaNotInitialized, SchemaOutOfDate, SchemaTooNew: each message names the database,
            the revisions and the command to run; DatabaseUnreachable if it cannot be read.
    """
    try:
        with engine.connect() as conn:
            found = _revision_of(conn)
    except DBAPIError as exc:
        raise DatabaseUnreachable(describe_unreachable(engine.url, exc)) from None
    head = head_revision()
    where = redact(engine.url)
    if found == head:
        return
    if found is None:
        raise SchemaNotInitialized(
            f"database {where!r} has no tiltloop schema (revision none, this tiltloop needs "
            f"{head}); run: {upgrade_hint(engine.url)}"
        )
    if found in known_revisions():
        raise SchemaOutOfDate(
            f"database {where!r} is at schema revision {found}, older than this tiltloop's "
            f"{head}; run: {upgrade_hint(engine.url)}"
        )
    raise SchemaTooNew(
        f"database {where!r} is at schema revision {found}, unknown to this tiltloop (head "
        f"{head}): a newer tiltloop wrote it; upgrade tiltloop, or downgrade the database with "
        f"the newer release"
    )
