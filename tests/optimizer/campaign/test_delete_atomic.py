"""Deleting a campaign with cheap oracles removes its cheap-oracle log campaigns and itself in ONE
transaction: ``tiltloop campaign delete`` SIGKILLed midway (the ``delete`` crash point, reached
after the child's rows are deleted, before the commit) leaves every row of both; an error midway
(the parent busy) leaves the child too; an uninterrupted delete removes both. SQLite and
Postgres, the cheap oracle the lab simulator over real HTTP."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from campaign_configs import campaign_config
from crash_cli import killed_at

from optimizer.campaign import operations
from optimizer.campaign.fidelity import FidelityStage, child_name
from oracles.labsim import LabSimulator
from storage import NewCandidate, Storage, upgrade
from storage.errors import CampaignBusy, NotFound

CHILD = child_name("P", "sim")


def _rows(st: Storage, name: str) -> tuple[str, int, int, int]:
    """What a half-done delete would change: status, rounds, queries, events."""
    return (st.load_campaign(name).status, len(st.list_rounds(name)),
            sum(st.query_counts(name).values()), len(st.list_events(name)))


def _parent_with_child(db_url: str, prior: str, lab: LabSimulator) -> Storage:
    """P (one round, two queries) and its cheap-oracle log P.sim (one round, two queries)."""
    entry: Any = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": 5.0,
                  "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 5.0}}
    sections: Any = {"oracles": [entry]}
    cfg = campaign_config("P", prior, lab.url, db_url, **sections)
    upgrade(db_url)
    st = Storage.open(db_url, actor="test")
    st.create_campaign("P", cfg.to_json_dict(), budget=cfg.budget.total)
    stage = FidelityStage(cfg, st, lambda _m: None)
    try:
        stage._ensure_children()
    finally:
        stage.close()
    for name in ("P", CHILD):
        cands = [NewCandidate(design=np.array([x, 0.0]), features=np.array([x, 0.0]),
                              log_weight=0.0, group=0, particle=i) for i, x in enumerate((0.1, 0.7))]
        st.record_round(name, 0, alpha=0.5, candidates=cands, selected=[0, 1], oracle_name="sim")
    return st


@pytest.mark.slow  # two SIGKILLed `tiltloop` processes
def test_delete_killed_midway_leaves_parent_and_children(
        db_url: str, tiny_prior_path: str, lab: LabSimulator, tmp_path: Path) -> None:
    st = _parent_with_child(db_url, tiny_prior_path, lab)
    try:
        before = {name: _rows(st, name) for name in ("P", CHILD)}
        # killed after P.sim's rows are deleted, before the transaction commits
        killed_at(["campaign", "delete", "P", "--url", db_url, "--yes", "--force"], "delete:1",
                  tmp_path / "delete.log")
        assert {name: _rows(st, name) for name in ("P", CHILD)} == before
        # killed after P's rows too (the last step before the commit): still all there
        killed_at(["campaign", "delete", "P", "--url", db_url, "--yes", "--force"], "delete:2",
                  tmp_path / "delete.log")
        assert {name: _rows(st, name) for name in ("P", CHILD)} == before
        counts = operations.delete(st, "P", force=True)
        assert counts["campaign"] == 2 and counts["oracle_query"] == 4, counts
        for name in ("P", CHILD):
            with pytest.raises(NotFound):
                st.load_campaign(name)
    finally:
        st.close()


def test_an_error_midway_deletes_nothing(db_url: str, tiny_prior_path: str,
                                         lab: LabSimulator) -> None:
    st = _parent_with_child(db_url, tiny_prior_path, lab)
    try:
        for q in st.list_queries(CHILD):  # P.sim has nothing in flight: its delete goes through
            assert st.transition_query(q.key, expected="pending", new="cancelled", error="test")
        before = {name: _rows(st, name) for name in ("P", CHILD)}
        deleted: list[str] = []
        # P.sim's rows are deleted first, then P refuses (queries in flight): both stay
        with pytest.raises(CampaignBusy, match="campaign 'P' has 2 queries in flight"):
            st.delete_campaigns([CHILD, "P"], after_each=deleted.append)
        assert deleted == [CHILD]
        assert {name: _rows(st, name) for name in ("P", CHILD)} == before
    finally:
        st.close()
