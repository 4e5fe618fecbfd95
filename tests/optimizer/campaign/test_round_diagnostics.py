"""Round diagnostics: the KL estimators against a closed form, ESS / resampling / lineage
counts, batch diversity and wasted batches.

Closed form: a Gaussian prior `p = N(m, s² I)` tilted by a linear reward `r(x) = bᵀx` gives
`π ∝ p · exp(r/α) = N(m + s² b/α, s² I)`, `log Z = bᵀm/α + s²‖b‖²/(2α²)`,
`E_π[r] = bᵀm + s²‖b‖²/α`, so `KL(π‖p) = E_π[r]/α − log Z = s²‖b‖²/(2α²)` (= ‖shift‖²/(2 s²)).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from optimizer.campaign.round_diagnostics import (kl_from_weights, kl_of_tilt, mean_pairwise_distance,
                                                  round_diagnostics, wasted_batches)
from optimizer.das import sample
from optimizer.priors.gaussian_mixture import GaussianMixturePrior

M = torch.tensor([0.5, -1.0])
S2 = 0.5
B = torch.tensor([1.0, 0.5])


def closed_form_kl(alpha: float) -> float:
    return S2 * float(B @ B) / (2 * alpha**2)


def test_snis_kl_matches_the_closed_form_on_prior_samples() -> None:
    rng = np.random.default_rng(0)
    x = M.numpy() + math.sqrt(S2) * rng.standard_normal((20_000, 2))
    r = x @ B.numpy()
    for alpha in (2.0, 1.0, 0.6):
        exact = closed_form_kl(alpha)
        assert kl_of_tilt(r, alpha) == pytest.approx(exact, rel=0.08), alpha
    # monotone in α, and saturates at log N
    ks = [kl_of_tilt(r, a) for a in (4.0, 2.0, 1.0, 0.5, 0.1, 0.001)]
    assert all(a < b for a, b in zip(ks, ks[1:]))
    assert ks[-1] <= math.log(len(r)) + 1e-9


def test_snis_kl_uses_the_sample_weights() -> None:
    # prior samples drawn from N(0, s²) reweighted to N(m, s²): same KL as exact samples of N(m, s²)
    rng = np.random.default_rng(1)
    x = math.sqrt(S2) * rng.standard_normal((40_000, 2))
    m = M.numpy()
    logw = (x @ m - 0.5 * m @ m) / S2  # N(m, s²) / N(0, s²)
    r = x @ B.numpy()
    assert kl_of_tilt(r, 1.0, logw) == pytest.approx(closed_form_kl(1.0), rel=0.1)


@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_kl_from_das_chunks_matches_the_closed_form(alpha: float) -> None:
    prior = GaussianMixturePrior(M[None], S2 * torch.eye(2)[None], torch.ones(1))
    res = sample(prior, lambda x: x @ B.to(x), num_particles=512, alpha=alpha, num_steps=300,
                 conditions=[None] * 4, generator=torch.Generator().manual_seed(0))
    lw = [res.log_weights[g].double().numpy() for g in range(4)]
    rw = [res.rewards[g].double().numpy() for g in range(4)]
    lz = [float(v) for v in res.log_normalizer.reshape(-1)]
    exact = closed_form_kl(alpha)
    est = kl_from_weights(lw, rw, lz, alpha)
    # measured: within 5% at 300 steps (the sampler's own discretization error shrinks with
    # the steps: -13% at 100)
    assert est == pytest.approx(exact, rel=0.1), (est, exact)
    # the estimate needs log Z: E_π[r]/α alone is off by far more than the tolerance
    assert abs(float(np.mean([np.exp(a) @ b for a, b in zip(lw, rw)])) / alpha - exact) > 0.5 * exact


def _chunk(c: int, ess: list[float], resampled: list[bool], origin: list[int],
           rewards: list[float] | None = None) -> SimpleNamespace:
    n = len(origin)
    return SimpleNamespace(chunk=c, ess=np.asarray(ess), resampled=np.asarray(resampled),
                           origin=np.asarray(origin), log_weights=np.full(n, -math.log(n)),
                           rewards=np.asarray(rewards if rewards is not None else [0.0] * n),
                           log_normalizer=0.0)


def test_round_diagnostics_counts() -> None:
    outs = [_chunk(0, [4.0, 2.0, 3.0], [False, True, False], [0, 0, 1, 3]),
            _chunk(1, [4.0, 3.0, 1.0], [True, False, True], [2, 2, 2, 2])]
    features = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [5, 5], [0, 0], [1, 1], [2, 2], [3, 3]])
    d = round_diagnostics(outs, 1.0, tilted=False, selected=[0, 1, 4, 5], features=features)
    assert d["min_ess_fraction"] == pytest.approx(0.25)  # chunk 1's last step: 1 of 4 particles
    assert d["resampling_events"] == 3
    assert d["unique_ancestors"] == 3 + 1
    assert d["kl"] == 0.0  # a plain-prior round
    assert d["batch_families"] == 2  # (0, 0) twice, (1, 2) twice
    assert d["batch_diversity"] == pytest.approx(mean_pairwise_distance(features[[0, 1, 4, 5]]))


def test_mean_pairwise_distance() -> None:
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])) == pytest.approx(4.0)
    assert mean_pairwise_distance(np.zeros((1, 3))) is None


def test_wasted_batches_use_the_running_median_at_the_time() -> None:
    rounds = [(0, [1.0, 2.0, 3.0]),   # no earlier results: not judged
              (1, [0.5, 1.5]),        # median of [1,2,3] = 2: all below → wasted
              (2, [2.5, 0.0]),        # median of [1,2,3,.5,1.5] = 1.5: 2.5 above → fine
              (3, []),                # no results: not judged
              (4, [1.4])]             # median of 7 values [0,.5,1,1.5,2,2.5,3] = 1.5 → wasted
    assert wasted_batches(rounds) == (2, 3, [1, 4])


def _rec(index: int, summary: dict | None, alpha: float = 0.5, anc: int | None = 8) -> SimpleNamespace:
    return SimpleNamespace(index=index, summary=summary, alpha=alpha, unique_ancestors=anc)


def test_round_rows_and_status_lines_read_old_and_new_rounds() -> None:
    from optimizer.campaign.round_summary import batch_figures, round_rows, status_lines

    diag = {"min_ess_fraction": 0.25, "resampling_events": 3, "kl": 0.8, "batch_diversity": 2.0,
            "batch_families": 3}
    auto = {"alpha": 0.5, "kl": 1.0, "kl_budget": 1.0, "brake": True, "reason": "budget met"}
    rounds = [_rec(0, {"tilted": False}, anc=None),  # written before diagnostics existed
              _rec(1, {"tilted": True, "diagnostics": diag, "alpha_auto": auto}),
              _rec(2, {"tilted": True, "diagnostics": {**diag, "batch_diversity": 4.0}})]
    rows = round_rows(rounds, {0: [1.0, 2.0, 3.0], 1: [0.0, 1.0], 2: [5.0]})
    assert [r["wasted"] for r in rows] == [None, True, False]
    assert rows[0]["kl"] is None and rows[1]["brake"] is True and rows[2]["alpha_auto"] is False
    figures = batch_figures(rows)
    assert figures == {"wasted_batches": 1, "judged_batches": 2, "batch_diversity": 3.0,
                       "batch_families": 3.0}
    lines = status_lines({**figures, "rounds": rows})
    assert lines == ["  round 2: α=0.5, KL≈0.8 nats, min ESS 25%, 3 resamplings, 8 ancestors",
                     "  batches: 1/2 wasted, diversity 3, 3 ancestor families per batch"]
    assert status_lines({**batch_figures(rows[:1]), "rounds": rows[:1]}) == []
