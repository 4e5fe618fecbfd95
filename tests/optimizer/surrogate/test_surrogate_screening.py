"""Pre-screening: the known best is picked, pending/observed/duplicate designs are excluded with
their reason, every candidate gets a logged value, results are seeded."""
from __future__ import annotations

import json

import pytest
import torch
from surrogate_dummies import get_dummy_surrogate

from optimizer.errors import ConfigError, SurrogateError
from optimizer.surrogate import Surrogate, SurrogateConfig, find_duplicates, screen

F64 = torch.float64


@pytest.fixture(scope="module")
def sur():
    """GP on 25 samples of f(x) = 1 - 2|x - (0.3, 0.7)|², so the best region is known."""
    return get_dummy_surrogate(n=25, seed=3)


def _candidates(seed=0, m=60):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(m, 2, generator=g, dtype=F64)
    C[17] = torch.tensor([0.3, 0.7], dtype=F64)  # the true optimum
    return C


@pytest.mark.parametrize("acquisition", ["qlognei", "qucb"])
def test_picks_the_known_best(sur, acquisition):
    C = _candidates()
    res = screen(sur, C, 1, acquisition=acquisition, beta=0.0)
    assert res.selected.tolist() == [17]
    assert res.acq_values.shape == (60,) and res.mean.shape == res.std.shape == (60, 1)
    # the single pick's value is that candidate's own value, as logged for every candidate
    assert torch.allclose(res.selected_values[0], res.acq_values[17])
    assert int(res.acq_values.argmax()) == 17


def test_qucb_with_beta_zero_is_the_posterior_mean_argmax(sur):
    C = torch.rand(300, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    res = screen(sur, C, 1, acquisition="qucb", beta=0.0)
    mean, _ = sur.posterior_mean_std(C)
    assert int(res.selected[0]) == int(mean.argmax())
    # qUCB averages quasi-MC samples of the posterior: equal to the mean up to QMC error (on
    # the candidates the prefilter kept; the others are NaN, never scored)
    scored = torch.isfinite(res.acq_values)
    assert int(scored.sum()) == res.num_scored == sur.config.screen_prefilter_size
    assert torch.allclose(res.acq_values[scored], mean.squeeze(-1)[scored], atol=2e-3)
    ref = screen(sur, C, 1, acquisition="qucb", beta=0.0, method="botorch")
    assert torch.allclose(ref.acq_values, mean.squeeze(-1), atol=2e-3)


def test_minimized_objective_picks_the_lowest_mean():
    sur = get_dummy_surrogate(n=12, config=SurrogateConfig(maximize=False, fit_maxiter=40))
    C = torch.rand(100, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    res = screen(sur, C, 1, acquisition="qucb", beta=0.0)
    assert int(res.selected[0]) == int(sur.posterior_mean_std(C)[0].argmin())


def test_pending_points_change_the_selection(sur):
    C = _candidates()
    C[40] = C[17] + 2e-6  # near-duplicates of the optimum (within tolerance)
    C[41] = C[17] - 3e-6
    free = screen(sur, C, 3, seed=0)
    assert 17 in free.selected.tolist()
    assert {40, 41}.isdisjoint(free.selected.tolist())  # near-duplicates of a candidate
    pending = C[17:18].clone()
    busy = screen(sur, C, 3, pending=pending, seed=0)
    assert busy.selected.tolist() != free.selected.tolist()
    reasons = {e.index: e.reason for e in busy.exclusions}
    assert reasons[17] == reasons[40] == reasons[41] == "pending"
    # no design of the batch is a near-duplicate of the pending one
    d = (C[busy.selected] - pending).pow(2).mean(-1).sqrt()
    assert (d > 1e-5).all()
    # pending also lowers the value of nearby (not duplicate) candidates: improvement is shared
    near = int(((C - pending).norm(dim=1) + 10 * busy.excluded).argmin())
    assert busy.acq_values[near] < free.acq_values[near]


def test_observed_designs_are_excluded_with_their_row(sur):
    C = _candidates()
    C[3] = sur.train_X[7] + 1e-7
    extra = torch.tensor([[0.9, 0.9]], dtype=F64)
    C[5] = extra[0]
    res = screen(sur, C, 2, observed=extra)
    why = {e.index: (e.reason, e.other_index) for e in res.exclusions}
    assert why[3] == ("observed", 7)  # training row 7
    assert why[5] == ("queried", 0)  # row 0 of the `observed` argument
    assert {3, 5}.isdisjoint(res.selected.tolist())


def test_resampled_copies_leave_one_eligible(sur):
    C = _candidates()[:10].repeat(3, 1)  # SMC resampling makes exact copies
    res = screen(sur, C, 10, acquisition="qucb")
    assert int((~res.excluded).sum()) == 10
    assert sorted(res.selected.tolist()) == list(range(10))
    assert all(e.reason == "candidate" and e.other_index == e.index % 10 for e in res.exclusions)


def test_everything_excluded_selects_nothing_and_says_why(sur):
    C = sur.train_X[:4].clone()
    res = screen(sur, C, 2)
    assert res.selected.numel() == 0 and res.excluded.all()
    assert "only 0 of q=2 selected" in res.note


def test_records_log_every_candidate_as_json(sur):
    C = _candidates()
    C[2] = sur.train_X[0]
    res = screen(sur, C, 2, seed=1)
    rows = res.records()
    assert len(rows) == 60 and json.loads(json.dumps(rows)) == rows
    assert [r["index"] for r in rows if r["selected"]] == sorted(res.selected.tolist())
    assert rows[2]["excluded_reason"] == "observed" and rows[2]["duplicate_of"] == 0


def test_seeded_and_reproducible(sur):
    C = _candidates()
    a = screen(sur, C, 3, generator=torch.Generator().manual_seed(9))
    b = screen(sur, C, 3, generator=torch.Generator().manual_seed(9))
    assert a.seed == b.seed and torch.equal(a.acq_values, b.acq_values)
    assert torch.equal(a.selected, b.selected)


def test_two_objectives_screen_on_the_scalarization():
    sur = get_dummy_surrogate(n=12, num_objectives=2)
    C = torch.rand(80, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    res = screen(sur, C, 1, acquisition="qucb", beta=0.0, weights=(1.0, 3.0))
    mean, _ = sur.posterior_mean_std(C)
    assert int(res.selected[0]) == int((mean @ torch.tensor([1.0, 3.0], dtype=F64)).argmax())
    ei = screen(sur, C, 2, weights=(1.0, 3.0), scalarization="chebyshev")
    assert ei.selected.numel() == 2 and torch.isfinite(ei.acq_values).all()


def test_bad_arguments_are_explained(sur):
    C = _candidates()
    with pytest.raises(ConfigError, match="acquisition='ei' is not a known choice; use one of"):
        screen(sur, C, 1, acquisition="ei")
    with pytest.raises(ConfigError, match="q=0 must be a positive int"):
        screen(sur, C, 0)
    with pytest.raises(SurrogateError, match="candidates has shape \\(5, 3\\)"):
        screen(sur, torch.rand(5, 3, dtype=F64), 1)
    C[4, 0] = float("nan")
    with pytest.raises(SurrogateError, match="candidates rows \\[4\\] are not finite"):
        screen(sur, C, 1)


def test_duplicate_detection_uses_rms_tolerance_for_any_shape():
    g = torch.Generator().manual_seed(0)
    A = torch.rand(5, 3, 8, 8, generator=g, dtype=torch.float32)
    R = A[[1, 3]] + 1e-6 * torch.randn(2, 3, 8, 8, generator=g)
    ex = find_duplicates(A, [("pending", R)], tol=1e-5)
    assert [(e.index, e.reason, e.other_index) for e in ex] == [(1, "pending", 0), (3, "pending", 1)]
    assert find_duplicates(A, [("pending", R)], tol=1e-8) == []
    with pytest.raises(ConfigError, match="dedup_tol=-1"):
        find_duplicates(A, [], tol=-1)
    _ = Surrogate  # the public name is importable from the package


def test_greedy_over_the_top_solo_values_matches_the_full_greedy(sur):
    C = torch.rand(150, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    full = screen(sur, C, 4, seed=2, max_choices=None)
    top = screen(sur, C, 4, seed=2, max_choices=12)
    assert torch.equal(full.selected, top.selected)
    assert torch.allclose(full.selected_values, top.selected_values)


@pytest.mark.parametrize("offset,tol", [(1e4, 1e-5), (1e6, 10.0)])
def test_duplicates_in_physical_units_are_found_exactly(offset, tol):
    """Designs of large magnitude and spread (physical units): exact duplicates are excluded
    (the `‖x‖² + ‖y‖² − 2x·y` expansion alone rounds them apart) and a pair at 2x the
    tolerance is not."""
    g = torch.Generator().manual_seed(1)
    R = offset * (1.0 + torch.rand(40, 4, generator=g, dtype=F64))
    C = torch.cat([R[[3, 7]], R[[9]] + 2 * tol, R[[5]] + 0.5 * tol])
    ex = find_duplicates(C, [("observed", R)], tol=tol)
    assert [(e.index, e.other_index) for e in ex] == [(0, 3), (1, 7), (3, 5)]
    assert ex[0].distance == 0.0 and abs(ex[2].distance - 0.5 * tol) < 1e-3 * tol
    exact_copies = find_duplicates(torch.cat([R[:3], R[:3]]), [], tol=1e-12)
    assert [(e.index, e.reason, e.other_index) for e in exact_copies] == [
        (3, "candidate", 0), (4, "candidate", 1), (5, "candidate", 2)]
