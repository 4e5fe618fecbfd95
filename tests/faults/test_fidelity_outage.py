"""Cheap evaluators' storage calls ride out a database outage like the rest of the driver: real
Postgres behind the TCP forwarder (``tests/faults/pg_forwarder.py``), the cheap oracle the lab
simulator over real HTTP.

Each step of the cheap-oracle stage that touches storage is started while the database refuses
connections (a 2 s outage): creating the child campaign (``_ensure_children`` /
``_create_child``), recording a cheap round (``_cheap_round``) and reading the cheap results for
the multi-task GP (``_multitask``). Each completes once the database is back, writes its rows
once, and its waits are WARNINGs naming the campaign; an outage longer than
``storage.outage_window_s`` ends in ``DatabaseOutage`` naming ``tiltloop resume``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from campaign_configs import campaign_config
from campaign_oracles import Bowl
from faults.pg_forwarder import PgForwarder
from pg_schemas import postgres_schema_url

from optimizer.campaign.fidelity import FidelityStage, child_name
from optimizer.campaign.rounds import TrainingData
from oracles.labsim import LabSimulator
from storage import Storage, upgrade
from storage.outage import DatabaseOutage

pytestmark = pytest.mark.slow  # three 2 s outages and a 10 s one
OUTAGE_S = 2.0


@pytest.fixture()
def lab() -> Iterator[LabSimulator]:
    sim = LabSimulator(Bowl(seed=1)).start()
    try:
        yield sim
    finally:
        sim.close()


def _config(prior: str, lab_url: str, url: str, window_s: float) -> Any:
    entry: Any = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": 5.0,
             "oracle": {"kind": "http", "base_url": lab_url, "timeout_s": 5.0}}
    sections: Any = {"oracles": [entry], "storage": {"url": url, "outage_window_s": window_s}}
    return campaign_config("P", prior, lab_url, url, **sections)


def _retries(caplog: pytest.LogCaptureFixture, doing: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "storage.outage"
            and "retrying in" in r.getMessage() and doing in r.getMessage()]


def test_cheap_stage_storage_calls_ride_out_an_outage(
        pg_schema: str, forwarder: PgForwarder, lab: LabSimulator, tiny_prior_path: str,
        caplog: pytest.LogCaptureFixture) -> None:
    direct = postgres_schema_url(pg_schema)
    upgrade(direct)
    via = forwarder.url(direct)
    cfg = _config(tiny_prior_path, lab.url, via, window_s=60.0)
    child = child_name("P", "sim")
    with Storage.open(direct) as mine, Storage.open(via) as st:
        mine.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
        stage = FidelityStage(cfg, st, lambda _m: None)
        try:
            with caplog.at_level(logging.WARNING):
                # 1. the child campaign is created (and its pause logged) during an outage
                forwarder.outage(OUTAGE_S)
                stage._ensure_children()
                assert _retries(caplog, "oracle sim's campaign"), "no outage felt"
                rec = mine.load_campaign(child)
                assert rec.status == "paused"
                assert len(mine.list_events(child, kind="campaign.created")) == 1
                assert len(mine.list_events(child, kind="campaign.paused")) == 1

                # 2. a cheap round is recorded during an outage, once
                designs = np.array([[0.1, 0.2], [0.5, -0.3], [-0.4, 0.9], [0.8, 0.8]])
                pop = SimpleNamespace(designs=designs, features=designs, alpha=0.5,
                                      log_weights=np.zeros(4), group=np.zeros(4, dtype=np.int64),
                                      particle=np.arange(4))
                forwarder.outage(OUTAGE_S)
                sent = stage._cheap_round(stage.cheap[0], 1, 0, pop, lambda d: d, None, None)
                assert sent == 2
                assert _retries(caplog, "oracle sim's round 0")
                assert len(mine.load_round(child, 0).query_keys) == 2
                assert mine.query_counts(child)["pending"] == 2

                # 3. the multi-task GP's read of the cheap results during an outage
                main = TrainingData(X=designs[:3], Y=np.array([[0.1], [0.4], [0.2]]), Yvar=None,
                                    X_pending=np.zeros((0,)), X_failed=np.zeros((0,)))
                forwarder.outage(OUTAGE_S)
                assert stage._multitask(lambda d: d, main, designs, refit=True) is None  # no results yet
                assert _retries(caplog, "oracle sim's results")
        finally:
            stage.close()
    retried = [r.getMessage() for r in caplog.records
               if r.name == "storage.outage" and "retrying in" in r.getMessage()]
    assert all(m.startswith("campaign P: ") and "outage window" in m for m in retried)


def test_cheap_stage_outage_past_the_window_names_the_resume_command(
        pg_schema: str, forwarder: PgForwarder, lab: LabSimulator, tiny_prior_path: str) -> None:
    direct = postgres_schema_url(pg_schema)
    upgrade(direct)
    via = forwarder.url(direct)
    cfg = _config(tiny_prior_path, lab.url, via, window_s=1.0)
    with Storage.open(direct) as mine, Storage.open(via) as st:
        mine.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
        stage = FidelityStage(cfg, st, lambda _m: None)
        try:
            forwarder.outage(10.0)
            with pytest.raises(DatabaseOutage, match=r"campaign P: .*oracle sim's campaign.*"
                                                     r"`tiltloop resume P"):
                stage._ensure_children()
        finally:
            forwarder.refuse(False)
            stage.close()
        with pytest.raises(Exception, match="not found"):
            mine.load_campaign(child_name("P", "sim"))
