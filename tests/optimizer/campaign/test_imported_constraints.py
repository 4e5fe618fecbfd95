"""Warm start with ``[[constraints]]``: imported results lacking a constraint output are not
trained on, so the round summary's ``imported`` counts only the results used and
``imported_skipped`` reports the others (with the outputs they lack, and a WARNING). The source
is a real stored campaign; the round is selected by the real ``RoundGenerator.select``."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.rounds import Population, RoundGenerator, training_data
from storage import History, NewCandidate, Storage


def _source(st: Storage, with_tox: int, without: int) -> None:
    """Campaign ``src`` (objective y, no constraints) with results of which ``with_tox`` also
    report the output ``tox``."""
    n = with_tox + without
    config = parse_config({"name": "src", "prior": {"name": "gmm-toy"}, "oracle": {"kind": "botorch"},
                           "objectives": [{"name": "y"}], "budget": {"q": n, "total": n},
                           "workers": {"particles_per_worker": n}})
    st.create_campaign("src", config.to_json_dict(), budget=n)
    X = np.random.default_rng(3).uniform(-1, 1, size=(n, 2))
    st.record_round("src", 0, alpha=1.0, oracle_name="lab",
                    candidates=[NewCandidate(x) for x in X], selected=list(range(n)))
    for i, q in enumerate(st.claim_queries("src", owner="t", limit=n)):
        st.transition_query(q.key, expected="pending", new="dispatched", owner="t")
        assert q.design is not None
        values = {"y": float(-np.sum(q.design ** 2))}
        if i < with_tox:
            values["tox"] = 0.1 * i
        st.transition_query(q.key, expected="dispatched", new="succeeded", values=values)


def _population(n: int) -> Population:
    X = np.random.default_rng(4).uniform(-1, 1, size=(n, 2))
    return Population(index=0, alpha=0.5, tilted=False, designs=X, features=X,
                      log_weights=np.zeros(n), group=np.zeros(n, dtype=np.int64),
                      particle=np.arange(n), family=np.arange(n), fit=None, sampler={},
                      unique_ancestors=n, timings={"fit_s": 0.0, "smc_s": 0.0}, observations=0)


def test_imported_counts_only_the_results_trained_on(storage: Storage, db_url: str, make_config: Any,
                                                     tiny_prior_path: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _source(storage, with_tox=3, without=4)
    cfg = make_config("warm", tiny_prior_path, "http://127.0.0.1:9", db_url,
                      constraints=[{"name": "tox", "op": "<=", "bound": 0.2}],
                      history={"import_from": ["src"]})
    imported = storage.load_history("src").completed
    assert training_data(History(campaign="warm"), cfg, imported).n == 3  # what the GP gets
    gen = RoundGenerator(cfg, pool=None)  # type: ignore[arg-type]  # select runs no SMC
    with caplog.at_level(logging.WARNING, logger="optimizer.campaign.rounds"):
        plan = gen.select(_population(12), 0, History(campaign="warm"), 2, imported=imported)
    assert plan.summary["imported"] == {"src": 3}
    assert plan.summary["imported_skipped"] == {"src": {"results": 4, "lacking": ["tox"]}}
    [warned] = [r.getMessage() for r in caplog.records]
    assert warned.startswith("campaign warm: 4 imported result(s) are not trained on")
    assert "4 from campaign src lack output(s) tox" in warned

    # without constraints every imported result is used: nothing skipped, no warning
    caplog.clear()
    plain = make_config("warm2", tiny_prior_path, "http://127.0.0.1:9", db_url,
                        history={"import_from": ["src"]})
    with caplog.at_level(logging.WARNING, logger="optimizer.campaign.rounds"):
        plan = RoundGenerator(plain, pool=None).select(  # type: ignore[arg-type]
            _population(12), 0, History(campaign="warm2"), 2, imported=imported)
    assert plan.summary["imported"] == {"src": 7} and "imported_skipped" not in plan.summary
    assert not caplog.records
