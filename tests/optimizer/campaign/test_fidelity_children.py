"""A cheap oracle's log campaign ``P.sim`` belongs to its parent ``P`` only: created paused with
a marker naming ``P`` in one transaction, never resumed or driven on its own, never confused
with an unrelated campaign of the same name, and deleted with ``P`` (children first)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oracles.labsim import LabSimulator
from optimizer.campaign import operations
from optimizer.campaign.config_fidelity import MARKER, child_marker
from optimizer.campaign.fidelity import FidelityStage, child_name
from optimizer.campaign.resume import resume_campaign
from optimizer.campaign.service import drive, load_campaign_config, open_storage, start_or_resume
from optimizer.errors import CampaignStateError, PreflightError
from storage.errors import NotFound
from campaign_configs import campaign_config


def _config(name: str, prior: str, url: str, db_url: str) -> Any:
    entry = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": 5.0,
             "oracle": {"kind": "http", "base_url": url, "timeout_s": 5.0}}
    return campaign_config(name, prior, url, db_url, oracles=[entry])


def _parent_with_child(cfg: Any, st: Any) -> None:
    st.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
    _ensure_children(cfg, st)


def _ensure_children(cfg: Any, st: Any) -> None:
    """What the driver's first round does: create (or adopt) the cheap oracles' campaigns."""
    stage = FidelityStage(cfg, st, lambda _m: None)
    try:
        stage._ensure_children()
    finally:
        stage.close()


def test_child_created_paused_with_marker_and_refuses_resume(tiny_prior_path: str, lab: LabSimulator,
                                                             tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = _config("P", tiny_prior_path, lab.url, url)
    with open_storage(url, create=True) as st:
        _parent_with_child(cfg, st)
        child = child_name("P", "sim")
        rec = st.load_campaign(child)
        assert rec.status == "paused"
        assert child_marker(rec.config) == {"campaign": "P", "oracle": "sim"}
        # created paused in the one transaction: its creation event says so, no "active" step
        created = [e for e in st.list_events(child) if e.kind == "campaign.created"]
        assert created[0].payload["status"] == "paused"
        assert not [e for e in st.list_events(child) if e.kind == "campaign.updated"]
        # status / export still parse its stored config (the marker is not a config field)
        assert load_campaign_config(st, child).name == child
        msg = "campaign P.sim holds the cheap oracle sim's queries of campaign P; resume P instead"
        with pytest.raises(CampaignStateError, match=msg):
            operations.unpause(st, child)
        with pytest.raises(CampaignStateError, match=msg):
            drive(load_campaign_config(st, child), st)
        assert st.load_campaign(child).status == "paused"
        # no scheduler takes it: it is never active
        assert st.acquire_free_campaigns("replica-a", 30.0, 10) == ["P"]
    with pytest.raises(CampaignStateError, match=msg):
        resume_campaign(child, url)


def test_unrelated_campaign_of_the_child_name_is_not_adopted_nor_deleted(
        tiny_prior_path: str, lab: LabSimulator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = _config("P", tiny_prior_path, lab.url, url)
    other = campaign_config("P.sim", tiny_prior_path, lab.url, url)
    with open_storage(url, create=True) as st:
        st.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
        st.create_campaign("P.sim", other.to_json_dict(), budget=12)
        # `tiltloop run` refuses before writing anything
        with pytest.raises(PreflightError, match=r"run\.toml: field `oracles\.0\.name`.*'P\.sim'"):
            start_or_resume(cfg, st, source="run.toml")
        with pytest.raises(PreflightError, match=r"oracles\.0\.name.*'P\.sim'"):
            _ensure_children(cfg, st)
        # a child marked for another parent is not adopted either
        data = other.to_json_dict()
        data[MARKER] = {"campaign": "Q", "oracle": "sim"}
        st.update_campaign("P.sim", config=data)
        with pytest.raises(PreflightError, match=r"oracles\.0\.name"):
            _ensure_children(cfg, st)
        operations.delete(st, "P")
        with pytest.raises(NotFound):
            st.load_campaign("P")
        assert st.load_campaign("P.sim").status == "active"  # not P's: left alone


def test_delete_removes_the_marked_child_first(tiny_prior_path: str, lab: LabSimulator,
                                               tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cfg = _config("P", tiny_prior_path, lab.url, url)
    with open_storage(url, create=True) as st:
        _parent_with_child(cfg, st)
        # a later config version without [[oracles]]: the child is found from version 1
        st.add_config_version("P", {**cfg.to_json_dict(), "oracles": []}, note="no cheap oracle")
        counts = operations.delete(st, "P")
        assert counts["campaign"] == 2
        for name in ("P", "P.sim"):
            with pytest.raises(NotFound):
                st.load_campaign(name)


def test_completed_campaign_resume_leaves_an_unrelated_child_name_alone(
        tiny_prior_path: str, lab: LabSimulator, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import numpy as np

    from storage import NewCandidate

    url = f"sqlite:///{tmp_path / 'c.db'}"
    entries = [{"name": n, "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": 5.0,
                "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 5.0}}
               for n in ("a", "sim")]
    cfg = campaign_config("P", tiny_prior_path, lab.url, url, oracles=entries)
    other = campaign_config("P.sim", tiny_prior_path, lab.url, url)
    with open_storage(url, create=True) as st:
        st.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
        st.update_campaign("P", status="completed")
        st.create_campaign("P.sim", other.to_json_dict(), budget=12)
        cands = [NewCandidate(design=np.array([x, 0.0]), features=np.array([x, 0.0]),
                              log_weight=0.0, group=0, particle=i) for i, x in enumerate((0.1, 0.7))]
        st.record_round("P.sim", 0, alpha=0.5, candidates=cands, selected=[0, 1],
                        oracle_name="lab")
        assert st.query_counts("P.sim")["pending"] == 2
        # the oracle is named by its place in [[oracles]] (1), also when a subset is restored
        stage = FidelityStage(cfg, st, lambda _m: None)
        try:
            with pytest.raises(PreflightError, match=r"oracles\.1\.name.*'P\.sim'"):
                stage._ensure_children([stage.cheap[1]])
            stage.cheap = [stage.cheap[1]]
            with pytest.raises(PreflightError, match=r"oracles\.1\.name.*'P\.sim'"):
                stage._ensure_children()
        finally:
            stage.close()
    # its queries in flight are not P's: the resume of the completed P reports its status
    with caplog.at_level(logging.WARNING):
        assert resume_campaign("P", url).status == "completed"
    assert any("campaign P.sim is not its cheap-oracle log" in r.getMessage() for r in caplog.records)
    assert not lab.store.evaluations
    with open_storage(url, create=False) as st:
        assert st.query_counts("P.sim")["pending"] == 2
        with pytest.raises(NotFound):
            st.load_campaign("P.a")  # nothing out: nothing created
