"""The database clock as SQL expressions, so leases and timestamps never depend on a host's clock.

Postgres: ``clock_timestamp()`` (wall time at the statement, not the transaction start).
SQLite: ``strftime('%Y-%m-%d %H:%M:%f', 'now')`` — UTC with milliseconds, in the same text form
SQLAlchemy stores datetimes in, so stored values and the clock compare correctly as text.

>>> stmt = sa.update(OracleQuery).values(lease_expires_at=db_now_plus(30.0))
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class db_now(FunctionElement):  # noqa: N801 — reads like a SQL function
    """The database server's current time (UTC on SQLite)."""

    type = sa.DateTime(timezone=True)
    name = "db_now"
    inherit_cache = True


class db_now_plus(FunctionElement):  # noqa: N801
    """The database server's current time plus ``seconds`` (a float)."""

    type = sa.DateTime(timezone=True)
    name = "db_now_plus"
    inherit_cache = True

    def __init__(self, seconds: float) -> None:
        super().__init__(sa.literal(float(seconds), sa.Float()))


@compiles(db_now)
def _now_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return "clock_timestamp()"


@compiles(db_now, "sqlite")
def _now_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return _SQLITE_NOW


@compiles(db_now_plus)
def _plus_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    (seconds,) = list(element.clauses)
    return f"(clock_timestamp() + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(db_now_plus, "sqlite")
def _plus_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    (seconds,) = list(element.clauses)
    return (
        f"strftime('%Y-%m-%d %H:%M:%f', 'now', ({compiler.process(seconds, **kw)} || ' seconds'))"
    )
