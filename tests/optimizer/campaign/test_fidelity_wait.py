"""The cheap oracles' wait and the campaign's end: the wait stops at once when the driver must
stop (nothing more is dispatched), cheap queries still out when the campaign finishes are polled
until answered or ``wait_s`` runs out (a WARNING names the campaign, the oracle and the keys),
a later driver re-polls them by stored job id, and ``cancel`` reaches them."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oracles.labsim import LabSimulator
from optimizer.campaign import operations
from optimizer.campaign.fidelity import FidelityStage, child_name
from optimizer.campaign.service import open_storage
from storage import NewCandidate
from campaign_configs import campaign_config
from campaign_oracles import Bowl


def _config(prior: str, url: str, db_url: str, wait_s: float) -> Any:
    entry = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": wait_s,
             "oracle": {"kind": "http", "base_url": url, "timeout_s": 5.0}}
    return campaign_config("P", prior, url, db_url, oracles=[entry],
                           budget={"poll_interval_s": 0.05})


def _stage_with_queries(cfg: Any, st: Any) -> FidelityStage:
    """P, its child P.sim and a recorded cheap round 0 of two queries (in the outbox)."""
    st.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
    stage = FidelityStage(cfg, st, lambda _m: None)
    stage._ensure_children()
    cands = [NewCandidate(design=np.array([x, 0.0]), features=np.array([x, 0.0]), log_weight=0.0,
                          group=0, particle=i) for i, x in enumerate((0.1, 0.7))]
    st.record_round(child_name("P", "sim"), 0, alpha=0.5, candidates=cands, selected=[0, 1],
                    oracle_name="sim")
    return stage


def test_wait_returns_at_once_when_the_driver_must_stop(tiny_prior_path: str, slow_lab: LabSimulator,
                                                        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = _config(tiny_prior_path, slow_lab.url, url, wait_s=60.0)
    with open_storage(url, create=True) as st:
        stage = _stage_with_queries(cfg, st)
        try:
            calls: list[int] = []
            stage._wait(lambda: bool(calls.append(1)) or True)
            assert len(calls) == 1
            # stopped before sending anything: both queries still wait in the outbox
            assert st.query_counts(child_name("P", "sim"))["pending"] == 2
            assert not slow_lab.store.evaluations
        finally:
            stage.close()


def test_finish_polls_cheap_queries_gives_up_with_a_warning_and_a_new_driver_repolls(
        tiny_prior_path: str, slow_lab: LabSimulator, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    child = child_name("P", "sim")
    with open_storage(url, create=True) as st:
        stage = _stage_with_queries(_config(tiny_prior_path, slow_lab.url, url, wait_s=0.1), st)
        try:
            with caplog.at_level(logging.WARNING, logger="optimizer.campaign.fidelity"):
                stage.finish()
        finally:
            stage.close()
        counts = st.query_counts(child)
        assert counts["dispatched"] + counts["running"] == 2, counts  # sent, not answered yet
        keys = sorted(q.key for q in st.list_queries(child))
        warned = [r.getMessage() for r in caplog.records if "finishes with" in r.getMessage()]
        assert len(warned) == 1 and "campaign P" in warned[0] and "oracle sim" in warned[0]
        assert all(k in warned[0] for k in keys)
        # the next driver restores the child's dispatcher and polls them to the end
        stage = FidelityStage(_config(tiny_prior_path, slow_lab.url, url, wait_s=30.0), st,
                              lambda _m: None)
        try:
            stage.finish()
        finally:
            stage.close()
        assert st.query_counts(child)["succeeded"] == 2
        assert set(slow_lab.store.evaluations) == set(keys)  # each sent once
        assert max(slow_lab.store.evaluations.values()) == 1


def test_cancel_reaches_the_cheap_oracles_queries(tiny_prior_path: str, slow_lab: LabSimulator,
                                                  tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    child = child_name("P", "sim")
    cfg = _config(tiny_prior_path, slow_lab.url, url, wait_s=0.05)
    with open_storage(url, create=True) as st:
        stage = _stage_with_queries(cfg, st)
        try:
            stage._wait()  # sends both, gives up after wait_s: they are at the lab
        finally:
            stage.close()
        assert st.in_flight_count(child) == 2
        out = operations.cancel(st, "P", cfg)
        assert len(out.at_oracle) == 2 and st.in_flight_count(child) == 0
        assert st.query_counts(child)["cancelled"] == 2
        assert st.load_campaign(child).status == "cancelled"
        operations.delete(st, "P")  # nothing in flight any more: no --force needed


def test_a_failing_cheap_oracle_trips_the_guard_naming_it(tiny_prior_path: str, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from oracles.labsim.faults import FaultPlan

    lab = LabSimulator(Bowl(seed=1), faults=FaultPlan(rates={"nan": 1.0})).start()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    try:
        entry = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": 30.0,
                 "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 5.0}}
        cfg = campaign_config("P", tiny_prior_path, lab.url, url, oracles=[entry],
                              budget={"poll_interval_s": 0.05, "max_consecutive_failures": 2})
        with open_storage(url, create=True) as st:
            stage = _stage_with_queries(cfg, st)
            try:
                with caplog.at_level(logging.WARNING, logger="optimizer.campaign.fidelity"):
                    stage._wait()
            finally:
                stage.close()
            assert st.query_counts(child_name("P", "sim"))["failed"] == 2
            trip = stage.take_trip()
            assert trip is not None and trip.rule == "consecutive"
            assert trip.message.startswith("cheap oracle sim (campaign P.sim): 2 oracle queries failed")
            assert set(trip.keys) == {q.key for q in st.list_queries(child_name("P", "sim"))}
            assert stage.take_trip() is None
            assert any("cheap oracle sim trips the budget guard" in r.getMessage() for r in caplog.records)
    finally:
        lab.close()
