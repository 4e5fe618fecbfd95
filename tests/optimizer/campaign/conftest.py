"""Fixtures for campaign tests: a tiny real prior on disk, a lab simulator over real HTTP, configs."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import parse_config
from oracles.labsim import LabSimulator
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


def _make_config(name: str, prior: str, lab_url: str, db_url: str,
                 **sections: dict[str, Any]) -> CampaignConfig:
    """A small valid campaign config; ``sections`` override whole tables' keys."""
    data: dict[str, Any] = {
        "name": name, "seed": 3,
        "prior": {"name": prior},
        "oracle": {"kind": "http", "options": {"base_url": lab_url, "timeout_s": 10.0}},
        "objectives": [{"name": "y", "direction": "maximize"}],
        "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 0.5, "num_steps": 8},
        "workers": {"count": 2, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 4, "max_in_flight": 8, "total": 12, "poll_interval_s": 0.05},
        "storage": {"url": db_url},
    }
    for key, value in sections.items():
        if key == "oracle" and value.get("kind", "http") != "http":
            data[key] = value  # another kind: the http options do not apply
            continue
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, f"<test config {name}>")


@pytest.fixture()
def make_config():  # type: ignore[no-untyped-def]
    """``make_config(name, prior, lab_url, db_url, **sections)`` -> a small valid CampaignConfig."""
    return _make_config


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file, or a private schema on the test Postgres server (the
    suite-wide ``pg_schema`` fixture: skipped when Postgres is unreachable, failed under
    TILTLOOP_REQUIRE_POSTGRES=1)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'campaign.db'}"
    return postgres_schema_url(request.getfixturevalue("pg_schema"))
