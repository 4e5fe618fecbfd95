"""The async pipeline with one query at a time (``q = 1``, ``max_in_flight = 1``): before the
surrogate has its first ``MIN_OBSERVATIONS`` results a finished plain-prior query must be followed
by another one, as in the sync loop (it once waited forever for results that nothing was in
flight to produce)."""
from __future__ import annotations

import pytest

from campaign_oracles import Bowl
from optimizer.campaign.service import run_campaign
from oracles.labsim import LabSimulator
from storage import Storage


@pytest.mark.slow  # a whole campaign on Ray
@pytest.mark.timeout(240)
def test_async_one_query_at_a_time_spends_its_budget(ray_session: str, tiny_prior_path: str,
                                                     tmp_path, make_config) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    with LabSimulator(Bowl(seed=0, latency_s=0.05)).start() as lab:
        cfg = make_config("one", tiny_prior_path, lab.url, url,
                          budget={"q": 1, "max_in_flight": 1, "total": 5, "poll_interval_s": 0.05},
                          pipeline={"mode": "async"})
        status = run_campaign(cfg)
        assert status.status == "completed" and status.results == 5, status
        with Storage.open(url) as st:
            rounds = st.list_rounds("one")
        assert len(rounds) == 5
        # the first two are plain-prior queries, one after the other; then the tilted ones
        assert [bool((r.summary or {}).get("tilted")) for r in rounds][:2] == [False, False]
        assert set(lab.store.evaluations.values()) == {1}
