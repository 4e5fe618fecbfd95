"""Screening exclusion reasons reach the candidates: a particle that duplicates a training design
or a design in flight is left out with that reason, stored with the candidate."""
from __future__ import annotations

import numpy as np

from optimizer.campaign.rounds import TrainingData
from optimizer.campaign.surrogate import SurrogateAdapter
from optimizer.surrogate.config import SurrogateConfig
from optimizer.workers.components import load_feature_bundle


def test_screen_returns_one_reason_per_candidate() -> None:
    bundle = load_feature_bundle("gmm-toy", "prior")
    rng = np.random.default_rng(0)
    X = rng.uniform(-4, 4, size=(10, 2))
    Y = -((X - 1.0) ** 2).sum(1, keepdims=True)
    pending = rng.uniform(-4, 4, size=(1, 2))
    adapter = SurrogateAdapter(bundle, SurrogateConfig(fit_maxiter=30))
    fit = adapter.fit(TrainingData(X=X, Y=Y, Yvar=None, X_pending=pending, X_failed=np.zeros((0,))))
    fresh = rng.uniform(-4, 4, size=(6, 2))
    designs = np.concatenate([fresh, X[:1], pending, fresh[:1]])  # trained, pending, repeat
    res = adapter.screen(fit.model, designs, 2, pending=pending, observed=np.zeros((0,)), seed=0)
    assert len(res.reasons) == len(designs)
    assert res.reasons[:6] == (None,) * 6
    assert res.reasons[6:] == ("observed", "pending", "candidate")
    assert list(np.flatnonzero(res.excluded)) == [6, 7, 8]
    assert not set(res.selected) & {6, 7, 8}
