"""Postgres test schemas: reachability check (once per session) and per-test schema URLs.

Shared by every test that needs a real Postgres (the ``pg_schema`` fixture in ``tests/conftest.py``
builds on it). The server is ``TILTLOOP_TEST_DATABASE_URL`` (default: local ``test`` database).
"""
from __future__ import annotations

import os

import psycopg
import pytest
import sqlalchemy as sa

PG_URL = os.environ.get(
    "TILTLOOP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_problem: list[str | None] = []


def _libpq_url(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_problem() -> str | None:
    """Why Postgres cannot be used (None when it can); checked once per session."""
    if not _pg_problem:
        try:
            with psycopg.connect(_libpq_url(sa.make_url(PG_URL)), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            _pg_problem.append(None)
        except Exception as exc:  # noqa: BLE001 — any failure means "not usable"
            _pg_problem.append(f"Postgres at {PG_URL} is unreachable: {exc}".strip())
    return _pg_problem[0]


def require_postgres() -> None:
    """Skip (or fail, under TILTLOOP_REQUIRE_POSTGRES=1) when Postgres cannot be used."""
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("TILTLOOP_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"TILTLOOP_REQUIRE_POSTGRES=1 but {problem}; start Postgres or set "
                    f"TILTLOOP_TEST_DATABASE_URL", pytrace=False)
    pytest.skip(problem)


def postgres_schema_url(schema: str, **options: str) -> str:
    """``PG_URL`` with the connection's search_path (and other settings) set to ``schema``."""
    flags = " ".join([f"-csearch_path={schema}"] + [f"-c{k}={v}" for k, v in options.items()])
    url = sa.make_url(PG_URL).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": flags}).render_as_string(hide_password=False)


def admin_sql(sql: str) -> None:
    """Run one statement on the test server outside any test schema (autocommit)."""
    with psycopg.connect(_libpq_url(sa.make_url(PG_URL)), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)
