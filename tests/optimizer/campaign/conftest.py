"""Fixtures for campaign tests: a tiny real prior on disk, a lab simulator over real HTTP, configs."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oracles.labsim import LabSimulator
from storage import Storage
from storage.migrate import upgrade
from campaign_configs import campaign_config
from campaign_oracles import Bowl
from pg_schemas import postgres_schema_url


@pytest.fixture()
def lab() -> Iterator[LabSimulator]:
    """The lab simulator (real HTTP on loopback, zero latency) over the Bowl oracle."""
    sim = LabSimulator(Bowl(seed=0)).start()
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture()
def slow_lab() -> Iterator[LabSimulator]:
    """The Bowl lab simulator answering after 1.5 s (a cheap oracle still out when a test acts)."""
    with LabSimulator(Bowl(seed=1, latency_s=1.5)).start() as sim:
        yield sim


@pytest.fixture()
def make_config():  # type: ignore[no-untyped-def]
    """``make_config(name, prior, lab_url, db_url, **sections)`` -> a small valid CampaignConfig."""
    return campaign_config


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file, or a private schema on the test Postgres server (the
    suite-wide ``pg_schema`` fixture: skipped when Postgres is unreachable, failed under
    TILTLOOP_REQUIRE_POSTGRES=1)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'campaign.db'}"
    return postgres_schema_url(request.getfixturevalue("pg_schema"))


@pytest.fixture()
def storage(db_url: str) -> Iterator[Storage]:
    """An open store on ``db_url``, migrated to head."""
    upgrade(db_url)
    with Storage.open(db_url, actor="test") as opened:
        yield opened
