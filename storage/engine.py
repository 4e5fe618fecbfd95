"""Database URLs and engines: Postgres (psycopg 3) in production, SQLite as the embedded default.

1. :func:`parse_url` validates a URL and normalises ``postgresql://`` / ``postgres://`` to the
   psycopg 3 driver; anything else is refused with the list of accepted forms.
2. :func:`create_engine` builds an engine with ``pool_pre_ping`` (a restarted Postgres is
   survived); on SQLite every connection gets WAL, a busy timeout and foreign keys, and every
   transaction starts with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing
   with "database is locked" halfway through a read-then-write transaction.
3. :func:`connect_check` opens one connection and turns a failure into one clear line.

>>> engine = create_engine("sqlite:///tiltloop.db")
"""
from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError

from storage.errors import DatabaseError, DatabaseUnreachable, InvalidDatabaseURL, StorageError

#: Environment variable holding the default database URL of the CLI and the service.
URL_ENV = "TILTLOOP_DATABASE_URL"
#: The embedded default when neither ``--url`` nor the environment names a database.
DEFAULT_URL = "sqlite:///tiltloop.db"
#: The help text of every command's ``--url`` option.
URL_HELP = f"database URL (default: ${URL_ENV}, else {DEFAULT_URL})"
_ACCEPTED = "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """The URL from ``TILTLOOP_DATABASE_URL``, else the embedded SQLite default."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def redact(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***`` (safe for logs and messages)."""
    try:
        parsed = url if isinstance(url, URL) else sa.make_url(url)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def _mask_password(text: str) -> str:
    """``scheme://user:***@rest`` for a URL that could not be parsed (its password never shows)."""
    # greedy to the LAST '@': an unencoded '@' inside the password must not expose its tail
    return re.sub(r"(://[^/@:]*:).*@", r"\1***@", text.strip())


def parse_url(url: str | URL) -> URL:
    """Validate a database URL and return it with the psycopg 3 driver made explicit.

    Raises:
        InvalidDatabaseURL: unparseable, unsupported backend, in-memory SQLite, or a SQLite file
            whose directory does not exist.
    """
    if isinstance(url, str):
        if not url.strip():
            raise InvalidDatabaseURL(f"database URL is empty; expected {_ACCEPTED}")
        try:
            parsed = sa.make_url(url.strip())
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            detail = f" ({exc})" if not isinstance(exc, ArgumentError) else ""
            raise InvalidDatabaseURL(
                f"malformed database URL {_mask_password(url)!r}{detail}; expected {_ACCEPTED}"
            ) from None
    else:
        parsed = url
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise InvalidDatabaseURL(
                f"database URL {redact(parsed)!r} uses driver {driver!r}; tiltloop uses psycopg 3: "
                f"write postgresql+psycopg://..."
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
        if "@" in (parsed.host or ""):  # "u:p@ss@host": the password's tail became the host
            raise InvalidDatabaseURL(
                f"database URL {_mask_password(str(url) if isinstance(url, str) else redact(url))!r} "
                f"has an '@' in its password or host; percent-encode it in the password (%40)"
            )
        if not parsed.database:
            raise InvalidDatabaseURL(
                f"database URL {redact(parsed)!r} names no database; expected {_ACCEPTED}"
            )
    elif backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise InvalidDatabaseURL(
                f"database URL {redact(parsed)!r} uses SQLite driver {driver!r}; write sqlite:///PATH"
            )
        if not parsed.database or parsed.database == ":memory:":
            raise InvalidDatabaseURL(
                f"database URL {str(parsed)!r} is an in-memory SQLite database, which loses every "
                f"query when the process stops; write sqlite:///PATH to a file"
            )
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise InvalidDatabaseURL(
                f"database URL {str(parsed)!r}: folder {str(folder)!r} does not exist; "
                f"create it or choose another path"
            )
    else:
        raise InvalidDatabaseURL(
            f"database URL {redact(parsed)!r} uses unsupported backend {backend!r}; "
            f"expected {_ACCEPTED}"
        )
    return parsed


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite (the embedded backend)."""
    return engine.dialect.name == "sqlite"


def create_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for a validated URL (see the module docstring for the settings it applies)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, echo=echo, pool_pre_ping=True)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 10
    return sa.create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (persistent, so usually already done).

    The switch needs an exclusive lock and SQLite does not run the busy handler for it: two
    first connections to a new file (two services starting at once) would fail with "database
    is locked". Retried for at most the busy timeout, then the error is raised.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # The driver's own implicit BEGIN is switched off; SQLAlchemy's "begin" event emits ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then never
        # fail with SQLITE_BUSY_SNAPSHOT, and busy_timeout makes concurrent writers wait.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def connect_check(engine: Engine) -> None:
    """Open and close one connection; a failure becomes :class:`DatabaseUnreachable`."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        raise DatabaseUnreachable(describe_unreachable(engine.url, exc)) from None


def describe_unreachable(url: URL, exc: BaseException) -> str:
    """One line explaining why the database at ``url`` cannot be used, and what to check."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    if url.get_backend_name() == "sqlite":
        return f"cannot open SQLite database {url.database!r}: {first}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return (
        f"cannot connect to Postgres at {where} (database {url.database!r}, URL "
        f"{redact(url)!r}): {first}; check that the server is running and the URL "
        f"(--url or {URL_ENV})"
    )


def is_connection_error(exc: DBAPIError) -> bool:
    """Whether a driver error means the connection is gone or could not be made."""
    if exc.connection_invalidated:
        return True
    name = type(exc.orig).__name__
    return name in ("OperationalError", "InterfaceError") and "locked" not in str(exc.orig)


def map_dbapi_error(url: URL, exc: DBAPIError, *, doing: str) -> StorageError:
    """A driver error as :class:`DatabaseUnreachable` or :class:`DatabaseError` (one line)."""
    if is_connection_error(exc):
        return DatabaseUnreachable(describe_unreachable(url, exc))
    first = str(getattr(exc, "orig", exc)).strip().splitlines()
    return DatabaseError(f"{doing} failed on database {redact(url)!r}: "
                         f"{first[0] if first else type(exc).__name__}")
