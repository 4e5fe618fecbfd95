"""Storage fixtures: every test runs on SQLite (a temp file) AND on a real Postgres.

Each Postgres test gets its own fresh schema (the suite-wide ``pg_schema`` fixture of
``tests/conftest.py``: ``CREATE SCHEMA t_<uuid>``, selected through the connection's
``search_path`` option in the URL) that is dropped afterwards. An unreachable Postgres skips those
tests, or fails them when ``TILTLOOP_REQUIRE_POSTGRES=1`` (as in CI).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage import Storage, upgrade

from pg_schemas import postgres_schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return request.param


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """URL of a database with no tiltloop schema, on the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'tiltloop.db'}"
    schema = request.getfixturevalue("pg_schema")
    return postgres_schema_url(schema)


@pytest.fixture
def storage_url(empty_url: str) -> str:
    """URL of a database migrated to head."""
    upgrade(empty_url)
    return empty_url


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    """An open :class:`Storage` on a migrated database."""
    with Storage.open(storage_url, actor="test") as opened:
        yield opened
