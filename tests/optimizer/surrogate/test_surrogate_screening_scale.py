"""Screening at scale and diverse batches: the fast path against the BoTorch reference, ancestor
families after an ESS collapse, the prefilter's soundness and the local-subset GP's error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from surrogate_dummies import get_dummy_surrogate, smooth_f

from optimizer.campaign.rounds import ancestor_families
from optimizer.errors import ConfigError
from optimizer.surrogate import Surrogate, SurrogateConfig, screen
from optimizer.surrogate.finite import Conditioning, local_rows
from optimizer.surrogate.prefilter import pareto_layers
from optimizer.workers.smc_worker import ChunkResult

F64 = torch.float64


@pytest.fixture(scope="module")
def sur():
    """GP on 25 samples of f(x) = 1 - 2|x - (0.3, 0.7)|² (maximum 1 at (0.3, 0.7))."""
    return get_dummy_surrogate(n=25, seed=3)


def _collapsed(seed: int, center: tuple[float, float], spread: float = 0.03):
    """200 particles: 180 of family 0 around ``center`` (an ESS collapse), 20 of 10 other
    families spread over the good region around the optimum."""
    g = torch.Generator().manual_seed(seed)
    big = torch.tensor(center, dtype=F64) + spread * torch.randn(180, 2, generator=g, dtype=F64)
    rest = torch.tensor([0.3, 0.7], dtype=F64) + 0.18 * torch.randn(20, 2, generator=g, dtype=F64)
    C = torch.cat([big, rest]).clamp(0, 1)
    fam = torch.cat([torch.zeros(180, dtype=torch.long), 1 + torch.arange(20) // 2])
    return C, fam


def test_collapsed_population_yields_a_batch_over_several_families(sur):
    C, fam = _collapsed(0, (0.36, 0.62))
    blind = screen(sur, C, 8, seed=0)
    # without families the batch goes (mostly) to the big family: the failure of issue 15
    assert int((fam[blind.selected] == 0).sum()) >= 5
    res = screen(sur, C, 8, seed=0, families=fam)
    assert res.batch_families is not None and res.batch_families >= 5
    assert int((fam[res.selected] == 0).sum()) <= 3
    assert res.batch_families == len(set(fam[res.selected].tolist()))
    # every family is still offered to the acquisition
    assert set(fam[torch.isfinite(res.acq_values)].tolist()) == set(range(11))


def test_a_clearly_better_family_still_gets_several_picks():
    """Family 0 spreads around the optimum, the others sit in a poor corner (f ≈ -0.3); with
    10 noisy observations the GP is unsure enough that further family-0 members still promise
    a material share of the first pick's improvement, so the cap is lifted."""
    sur = get_dummy_surrogate(n=10, seed=3, noise_std=0.1)
    g = torch.Generator().manual_seed(1)
    good = torch.tensor([0.3, 0.7], dtype=F64) + 0.2 * torch.randn(60, 2, generator=g, dtype=F64)
    poor = torch.tensor([0.95, 0.05], dtype=F64) + 0.02 * torch.randn(20, 2, generator=g, dtype=F64)
    C = torch.cat([good, poor]).clamp(0, 1)
    fam = torch.cat([torch.zeros(60, dtype=torch.long), 1 + torch.arange(20) // 2])
    res = screen(sur, C, 4, seed=0, families=fam)
    assert int((fam[res.selected] == 0).sum()) >= 2
    # an infinite margin forbids any second member while other families are left
    strict = screen(sur.__class__(sur.models, feature_map=sur.feature_map,
                                  config=sur.config.model_copy(update={"screen_family_margin": 1e9}),
                                  X=sur.train_X, Y=sur.train_Y, Yvar=sur.train_Yvar, Z=sur.train_Z,
                                  cond_idx=sur.cond_idx, bounds=sur.bounds, fit_info=sur.fit_info),
                    C, 4, seed=0, families=fam)
    assert strict.batch_families == 4


def test_distinct_families_change_nothing(sur):
    C = torch.rand(300, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    plain = screen(sur, C, 6, seed=3)
    fam = screen(sur, C, 6, seed=3, families=torch.arange(300))
    assert torch.equal(plain.selected, fam.selected)
    assert torch.allclose(plain.selected_values, fam.selected_values)
    assert fam.batch_families == 6 and plain.batch_families is None


@pytest.mark.parametrize("seed", range(4))
def test_prefilter_keeps_the_reference_first_pick(sur, seed):
    """Candidates inside and outside the data (high σ there): a 16-candidate prefilter still
    holds the candidate BoTorch's full qLogNEI picks first, and the fast path picks it too."""
    g = torch.Generator().manual_seed(100 + seed)
    C = torch.rand(400, 2, generator=g, dtype=F64) * 1.6 - 0.3
    small = Surrogate(sur.models, feature_map=sur.feature_map,
                      config=sur.config.model_copy(update={"screen_prefilter_size": 16}),
                      X=sur.train_X, Y=sur.train_Y, Yvar=sur.train_Yvar, Z=sur.train_Z,
                      cond_idx=sur.cond_idx, bounds=sur.bounds, fit_info=sur.fit_info)
    ref = screen(sur, C, 1, seed=seed, method="botorch")
    fast = screen(small, C, 1, seed=seed)
    assert fast.num_scored == 16
    assert bool(torch.isfinite(fast.acq_values[ref.selected[0]]))
    assert int(fast.selected[0]) == int(ref.selected[0])


def test_fast_path_matches_the_reference_batch(sur):
    C = torch.rand(200, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
    pend = torch.tensor([[0.5, 0.5]], dtype=F64)
    ref = screen(sur, C, 4, seed=5, pending=pend, method="botorch")
    fast = screen(sur, C, 4, seed=5, pending=pend)
    assert set(fast.selected.tolist()) == set(ref.selected.tolist())
    assert int(fast.selected[0]) == int(ref.selected[0])
    assert torch.allclose(fast.selected_values[0], ref.selected_values[0], atol=0.05)


def test_exact_conditioning_equals_the_gp_posterior(sur):
    Z = torch.rand(50, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    mean, var = Conditioning.build(sur, sur.cond_idx).mean_var(Z)
    m2, v2 = sur.mean_var_features(Z)
    assert torch.allclose(mean, m2, atol=1e-9) and torch.allclose(var, v2, atol=1e-9)
    both = get_dummy_surrogate(n=15, num_objectives=2, with_yvar=True)
    mean, var = Conditioning.build(both, both.cond_idx).mean_var(Z)
    m2, v2 = both.mean_var_features(Z)
    assert torch.allclose(mean, m2, atol=1e-9) and torch.allclose(var, v2, atol=1e-9)


def test_local_subset_gp_is_within_tolerance_of_exact():
    """n = 800 above ``screen_exact_max_observations`` = 250: the local 250-row GP's mean is
    within 0.04 (the function spans [-1, 1]; noise std 0.05) of the exact GP's, and its std is
    at least the exact one (less data) and at most 2.5 times it, at query points inside the
    data; screening takes the approximate path."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(800, 2, generator=g, dtype=F64)
    Y = smooth_f(X) + 0.05 * torch.randn(800, 1, generator=g, dtype=F64)
    cfg = SurrogateConfig(fit_maxiter=60, fit_subset_size=200, screen_local_size=250,
                          screen_exact_max_observations=250)
    sur = Surrogate.fit(X, Y, config=cfg)
    Q = torch.rand(40, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.8 + 0.1
    rows = local_rows(sur, Q, 250, sur.train_Y[:, 0])
    assert rows.numel() == 250 and torch.unique(rows).numel() == 250
    ml, vl = Conditioning.build(sur, rows).mean_var(Q)
    me, ve = sur.mean_var_features(Q)
    assert float((ml - me).abs().max()) < 0.04
    ratio = (vl / ve).sqrt()
    assert float(ratio.min()) > 0.95 and float(ratio.max()) < 2.5
    C = torch.rand(300, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    res = screen(sur, C, 3, seed=0)
    assert res.approximate and res.conditioned_on == 250
    assert float(smooth_f(C[res.selected[:1]])) > float(smooth_f(C).quantile(0.95))


def test_pareto_layers_are_non_dominated_sorting():
    mean = torch.tensor([3.0, 2.0, 1.0, 2.0, 0.5, 1.0])
    std = torch.tensor([1.0, 2.0, 3.0, 1.0, 0.5, 1.0])
    assert pareto_layers(mean, std).tolist() == [0, 0, 0, 1, 3, 2]


def test_bad_families_are_explained(sur):
    C = torch.rand(10, 2, dtype=F64)
    with pytest.raises(ConfigError, match="families has 3 entries for 10 candidates"):
        screen(sur, C, 1, families=torch.arange(3))
    with pytest.raises(ConfigError, match="method='exact' is not a known choice"):
        screen(sur, C, 1, method="exact")


def test_ancestor_families_are_per_chunk_founders():
    def chunk(c: int, origin: list[int]) -> ChunkResult:
        n = len(origin)
        return ChunkResult(round_index=0, chunk=c, samples=np.zeros((n, 2)),
                           features=np.zeros((n, 2)), log_weights=np.zeros(n), rewards=np.zeros(n),
                           origin=np.array(origin), ess=np.ones(3), lambdas=np.ones(3),
                           resampled=np.zeros(3, bool), log_normalizer=0.0, seconds=0.0, pid=0)

    fam = ancestor_families([chunk(0, [0, 0, 2, 2]), chunk(1, [2, 1, 0, 0])])
    # founder 2 of chunk 0 and founder 2 of chunk 1 are different families
    assert fam.tolist()[:4] == [fam[0], fam[0], fam[2], fam[2]] and fam[0] != fam[2]
    assert len(set(fam.tolist())) == 5 and fam[4] not in fam[:4]
    assert fam[6] == fam[7] and fam[6] != fam[0]
