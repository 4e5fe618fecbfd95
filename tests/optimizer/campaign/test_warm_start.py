"""Warm start (`[history] import_from`): another campaign's results join the surrogate's training
set from the first round, their provenance is kept, and a source that cannot be used is refused
before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.export import load_export_rows
from optimizer.campaign.rounds import training_data
from optimizer.campaign.service import run_campaign
from optimizer.errors import PreflightError
from storage import History, NewCandidate, Storage


def _source(url: str, name: str, n: int, *, objective: str = "y", dim: int = 2) -> list[str]:
    """A finished source campaign with ``n`` succeeded queries (designs and values stored)."""
    from optimizer.campaign.service import open_storage

    rng = np.random.default_rng(7)
    X = rng.uniform(-1, 1, size=(n, dim))
    with open_storage(url, create=True) as st:
        config = parse_config({"name": name, "prior": {"name": "gmm-toy"}, "oracle": {"kind": "botorch"},
                               "objectives": [{"name": objective}], "budget": {"q": n, "total": n},
                               "workers": {"particles_per_worker": max(n, 2)}})
        st.create_campaign(name, config.to_json_dict(), budget=n)
        st.record_round(name, 0, alpha=1.0, oracle_name="lab",
                        candidates=[NewCandidate(x) for x in X], selected=list(range(n)))
        keys = []
        for q in st.claim_queries(name, owner="t", limit=n):
            st.transition_query(q.key, expected="pending", new="dispatched", owner="t")
            st.transition_query(q.key, expected="dispatched", new="succeeded",
                                values={objective: float(-np.sum(q.design ** 2))})
            keys.append(q.key)
    return keys


def test_training_data_appends_imported_results(db_url: str, make_config, tiny_prior_path: str) -> None:
    from optimizer.campaign.service import open_storage

    _source(db_url, "src", 5)
    cfg = make_config("warm", tiny_prior_path, "http://127.0.0.1:9", db_url,
                      history={"import_from": ["src"]})
    with open_storage(db_url, create=True) as st:
        imported = st.load_history("src").completed
    data = training_data(History(campaign="warm"), cfg, imported)
    assert data.n == 5 and data.X.shape == (5, 2)
    assert np.allclose(data.Y[:, 0], -np.sum(data.X ** 2, axis=1))
    assert training_data(History(campaign="warm"), cfg).n == 0  # cold: nothing


@pytest.mark.slow
def test_warm_campaign_fits_on_imported_results_from_round_0(ray_session: str, tiny_prior_path: str,
                                                             lab, db_url: str, make_config) -> None:
    src_keys = _source(db_url, "src", 6)
    cfg = make_config("warm", tiny_prior_path, lab.url, db_url, history={"import_from": ["src"]},
                      budget={"q": 4, "max_in_flight": 4, "total": 4, "poll_interval_s": 0.05})
    status = run_campaign(cfg)
    assert status.status == "completed" and status.results == 4
    with Storage.open(db_url) as st:
        r0 = st.list_rounds("warm")[0]
        # round 0 is tilted: the surrogate was fitted on the 6 imported results
        assert r0.summary["tilted"] and r0.summary["observations"] == 6
        assert r0.summary["imported"] == {"src": 6}
        rows = load_export_rows(st, "warm", objectives=[("y", "maximize")], imported=["src"])
    sources = {r.key: r.source for r in rows}
    assert {k for k, s in sources.items() if s == "src"} == set(src_keys)
    assert sum(s == "warm" for s in sources.values()) == 4


@pytest.mark.parametrize(("source", "words"), [
    ("missing", "no campaign 'missing' in this database"),
    ("other-objective", "only results of the same objectives can be imported"),
    ("other-shape", "has designs of shape (3,), this campaign's prior makes (2,)"),
])
def test_unusable_source_refused_before_any_row(ray_session: str, tiny_prior_path: str, lab, tmp_path,
                                                make_config, source: str, words: str) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _source(url, "other-objective", 2, objective="z")
    _source(url, "other-shape", 2, dim=3)
    cfg = make_config("warm", tiny_prior_path, lab.url, url, history={"import_from": [source]})
    with pytest.raises(PreflightError, match="history.import_from") as info:
        run_campaign(cfg, source="warm.toml")
    assert words in str(info.value)
    with Storage.open(url) as st:
        assert "warm" not in {c.name for c in st.list_campaigns()}
