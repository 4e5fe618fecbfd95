"""A completed campaign's cheap queries that its finish gave up on (``wait_s`` ran out) are
collectable: ``tiltloop status`` names them and ``tiltloop resume NAME`` polls them by stored job
id (the campaign stays completed, nothing new is generated or sent twice); keys still unanswered
after ``wait_s`` are logged at WARNING and the resume returns. SQLite and Postgres, the cheap
oracle the lab simulator over real HTTP."""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pytest
from campaign_configs import campaign_config

from optimizer.campaign.driver import campaign_status
from optimizer.campaign.fidelity import FidelityStage, child_name
from optimizer.campaign.resume import resume_campaign
from oracles.labsim import LabSimulator
from storage import NewCandidate, Storage, upgrade

pytestmark = pytest.mark.slow  # a lab answering in 1.5 s, waited for
CHILD = child_name("P", "sim")


def _config(prior: str, lab_url: str, db_url: str, wait_s: float) -> Any:
    entry: Any = {"name": "sim", "cost": 0.1, "per_round": 2, "budget": 10, "wait_s": wait_s,
                  "oracle": {"kind": "http", "base_url": lab_url, "timeout_s": 5.0}}
    sections: Any = {"oracles": [entry], "budget": {"poll_interval_s": 0.05}}
    return campaign_config("P", prior, lab_url, db_url, **sections)


def _completed_with_cheap_given_up(st: Storage, stored: Any, finishing: Any) -> list[str]:
    """P stored with ``stored``; a cheap round of two queries sent and given up on by a finish
    under ``finishing`` (a short ``wait_s``); P marked completed. Returns the cheap keys."""
    st.create_campaign("P", stored.to_json_dict(), budget=stored.budget.total)
    stage = FidelityStage(finishing, st, lambda _m: None)
    try:
        stage._ensure_children()
        cands = [NewCandidate(design=np.array([x, 0.0]), features=np.array([x, 0.0]),
                              log_weight=0.0, group=0, particle=i) for i, x in enumerate((0.1, 0.7))]
        st.record_round(CHILD, 0, alpha=0.5, candidates=cands, selected=[0, 1], oracle_name="sim")
        stage.finish()
    finally:
        stage.close()
    st.update_campaign("P", status="completed")
    counts = st.query_counts(CHILD)
    assert counts["dispatched"] + counts["running"] == 2, counts  # sent, given up on
    return sorted(q.key for q in st.list_queries(CHILD))


def test_resume_collects_a_completed_campaigns_cheap_answers(
        db_url: str, tiny_prior_path: str, slow_lab: LabSimulator,
        caplog: pytest.LogCaptureFixture) -> None:
    upgrade(db_url)
    stored = _config(tiny_prior_path, slow_lab.url, db_url, wait_s=20.0)
    with Storage.open(db_url) as st:
        keys = _completed_with_cheap_given_up(
            st, stored, _config(tiny_prior_path, slow_lab.url, db_url, wait_s=0.05))
        line = campaign_status(st, "P", stored).line()
        assert "oracle sim: 2 queries/10" in line
        assert "2 unanswered (`tiltloop resume P` collects them)" in line, line
        said: list[str] = []
        caplog.clear()  # the finish's own WARNING (given up on) is not the collection's
        with caplog.at_level(logging.WARNING):
            status = resume_campaign("P", db_url, progress=said.append)
        assert status.status == "completed"
        assert st.query_counts(CHILD)["succeeded"] == 2
        assert sorted(slow_lab.store.evaluations) == keys
        assert max(slow_lab.store.evaluations.values()) == 1  # polled, never sent again
        assert any("polling its 2 cheap queries still unanswered" in m for m in said), said
        assert not [r for r in caplog.records if "still unanswered" in r.getMessage()]
        assert "unanswered" not in campaign_status(st, "P", stored).line()
        assert sum(st.query_counts("P").values()) == 0  # nothing generated for [oracle]
        assert st.load_campaign("P").status == "completed"
        # nothing left: a second resume touches no lab and takes no time
        started = time.monotonic()
        assert resume_campaign("P", db_url).status == "completed"
        assert time.monotonic() - started < 5.0


def test_collection_gives_up_after_wait_s_naming_the_keys(
        db_url: str, tiny_prior_path: str, slow_lab: LabSimulator,
        caplog: pytest.LogCaptureFixture) -> None:
    upgrade(db_url)
    short = _config(tiny_prior_path, slow_lab.url, db_url, wait_s=0.05)
    with Storage.open(db_url) as st:
        keys = _completed_with_cheap_given_up(st, short, short)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            started = time.monotonic()
            status = resume_campaign("P", db_url)
            took = time.monotonic() - started
        assert status.status == "completed" and took < 10.0, took  # bounded, no loop
        warned = [r.getMessage() for r in caplog.records
                  if r.name == "optimizer.campaign.fidelity_collect"]
        assert len(warned) == 1 and warned[0].startswith("campaign P (completed): oracle sim: 2 ")
        assert all(k in warned[0] for k in keys)
        assert "`tiltloop resume P` polls them again" in warned[0]
        # named once: the collection's wait does not log the keys its caller logs
        naming = [r for r in caplog.records if r.levelno >= logging.WARNING and keys[0] in r.getMessage()]
        assert len(naming) == 1, [r.getMessage() for r in naming]
