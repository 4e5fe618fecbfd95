"""End to end on SQLite and Postgres: a small campaign (a plain-prior round, then tilted rounds)
against the lab simulator over HTTP completes its budget, exactly one query per selected
candidate, every result in the database."""
from __future__ import annotations

import pytest

from optimizer.campaign.service import run_campaign
from storage import Storage

pytestmark = pytest.mark.slow  # whole campaigns on Ray: 35-100 s each on 2 cores


def test_campaign_completes_exactly_once(ray_session: str, tiny_prior_path: str, lab, db_url: str,
                                         make_config) -> None:
    name = "e2e"
    cfg = make_config(name, tiny_prior_path, lab.url, db_url,
                      budget={"q": 4, "max_in_flight": 8, "total": 12, "poll_interval_s": 0.05})
    lines: list[str] = []
    status = run_campaign(cfg, progress=lines.append)
    assert status.status == "completed" and status.results == 12 and status.in_flight == 0
    with Storage.open(db_url) as st:
        counts = st.query_counts(name)
        assert counts["succeeded"] == 12 and sum(counts.values()) == 12
        rounds = st.list_rounds(name)
        assert len(rounds) == 3 and all(r.status == "complete" for r in rounds)
        assert [bool((r.summary or {}).get("tilted")) for r in rounds] == [False, True, True]
        assert rounds[1].surrogate_blob is None  # blobs only load with load_round
        assert st.load_round(name, 1).surrogate_blob  # the surrogate state is stored (bytes)
        keys = set()
        for r in rounds:
            cands = st.list_candidates(name, r.index)
            assert len(cands) == cfg.workers.particles_per_round  # every particle is logged
            selected = [c for c in cands if c.selected]
            assert len(selected) == 4 and all(c.query_key for c in selected)
            assert all(c.query_key is None for c in cands if not c.selected)
            assert {c.group for c in cands} == {0, 1}  # lineage: chunk and particle
            if r.index > 0:
                # every particle has its posterior logged; the acquisition scored the ones the
                # prefilter kept, the selected among them
                assert all(c.surrogate_mean is not None for c in cands)
                assert all(c.acquisition is not None for c in selected)
                assert r.summary["diagnostics"]["batch_families"] >= 1
            keys.update(c.query_key for c in selected)
        history = st.load_history(name)
        assert len(history.completed) == 12 and all(q.values for q in history.completed)
    evaluations = lab.store.evaluations
    assert set(evaluations) == keys and max(evaluations.values()) == 1
    assert any("tilted" in ln for ln in lines) and any("best y" in ln for ln in lines)


def test_stop_target_ends_campaign_early(ray_session: str, tiny_prior_path: str, lab, tmp_path,
                                         make_config) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    # Bowl's maximum is 0; any result above -1000 reaches this target in round 0
    cfg = make_config("target", tiny_prior_path, lab.url, url,
                      budget={"q": 4, "max_in_flight": 4, "total": 40, "stop_target": -1000.0,
                              "poll_interval_s": 0.05})
    status = run_campaign(cfg)
    assert status.target_reached and status.status == "completed"
    assert sum(status.queries.values()) == 4 and status.rounds == 1  # budget left unspent
