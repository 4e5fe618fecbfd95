"""Fixtures of the fault tests: the cutting TCP forwarder in front of the test Postgres."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from faults.pg_forwarder import PgForwarder
from pg_schemas import PG_URL


@pytest.fixture()
def forwarder() -> Iterator[PgForwarder]:
    """A ``PgForwarder`` to the test Postgres server (``forwarder.url(direct)`` goes through it)."""
    target = sa.make_url(PG_URL)
    with PgForwarder((target.host or "127.0.0.1", target.port or 5432)) as fwd:
        yield fwd
