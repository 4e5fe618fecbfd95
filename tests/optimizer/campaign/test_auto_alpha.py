"""``alpha = "auto"``: α from a KL budget (closed form: a Gaussian prior tilted by a linear
reward has `KL(α) = s²‖b‖²/(2α²)`, so the budget `K` gives `α* = s‖b‖/√(2K)`), the
over-optimization brake, and the config's validation."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from optimizer.campaign.auto_alpha import (MAX_PRIOR_SAMPLES, OveroptGap, PriorSample, choose_alpha,
                                           last_round_gap, solve_alpha)
from optimizer.campaign.config import SamplerConfig
from optimizer.campaign.config_io import parse_config
from optimizer.errors import CampaignConfigError

S2 = 0.5
B = np.array([1.0, 0.5])
M = np.array([0.5, -1.0])


def _prior(n: int = 20_000, seed: int = 0) -> PriorSample:
    rng = np.random.default_rng(seed)
    return PriorSample(designs=M + math.sqrt(S2) * rng.standard_normal((n, 2)), log_weights=None,
                       round_index=0)


def _reward(x: torch.Tensor) -> torch.Tensor:
    return x @ torch.as_tensor(B, dtype=x.dtype)


def alpha_star(budget: float) -> float:
    return math.sqrt(S2 * float(B @ B) / (2 * budget))


@pytest.mark.parametrize("budget", [0.2, 1.0, 2.0])
def test_auto_alpha_meets_the_budget_on_the_closed_form(budget: float) -> None:
    choice = choose_alpha(_reward, SamplerConfig(alpha="auto", kl_budget=budget), _prior(), None)
    assert choice.alpha == pytest.approx(alpha_star(budget), rel=0.06)
    assert choice.kl == pytest.approx(budget, rel=1e-6)  # the bisection converged on the estimate
    assert not choice.brake and choice.prior_samples == MAX_PRIOR_SAMPLES and "budget met" in choice.reason


def test_a_larger_budget_gives_a_smaller_alpha() -> None:
    r = _prior(2000).designs @ B
    alphas = [solve_alpha(r, k, 1e-4, 1e4)[0] for k in (0.1, 0.5, 1.0, 3.0)]
    assert all(a > b for a, b in zip(alphas, alphas[1:])), alphas


def test_the_bounds_win_when_the_budget_cannot_be_met() -> None:
    r = _prior(500).designs @ B
    a, kl, why = solve_alpha(r, 50.0, 1e-2, 1e2)  # > log 500: no α resolves it on 500 samples
    assert a == 1e-2 and kl <= math.log(500) + 1e-9 and "log N" in why
    a, kl, why = solve_alpha(r, 1e-6, 1e-2, 1e2)  # even α = 100 moves more than that
    assert a == 1e2 and kl >= 1e-6 and "alpha_max" in why
    a, kl, why = solve_alpha(np.ones(10), 1.0, 1e-2, 1e2)
    assert a == 1e2 and kl == 0.0 and "constant" in why


# With outcome constraints the target is p·exp(r/α)·PoF: an α-free log factor c(x). On the
# 1-d prior N(0, 1) with r = x and c = −K_C x²/2 the target is Gaussian with precision P = 1 + K_C
# and mean 1/(αP), so KL(α) = (1/P + 1/(αP)² − 1 + log P)/2 and the budget K is met at
# α = 1/(P·sqrt(2K − (1/P − 1 + log P))); ignoring c would give α = 1/sqrt(2K).
K_C = 1.0
P = 1.0 + K_C


def _kl_c(alpha: float) -> float:
    return 0.5 * (1 / P + 1 / (alpha * P) ** 2 - 1 + math.log(P))


def _gaussian_1d(n: int = 200_000) -> np.ndarray:
    return np.random.default_rng(4).standard_normal(n)


def test_kl_of_tilt_counts_the_alpha_free_factor() -> None:
    from optimizer.campaign.round_diagnostics import kl_of_tilt

    x = _gaussian_1d()
    for alpha in (0.5, 1.0, 3.0):
        assert kl_of_tilt(x, alpha, extra=-0.5 * K_C * x**2) == pytest.approx(_kl_c(alpha), rel=0.03)
    # α → ∞ leaves the factor's own KL (the constraint alone moves the target)
    assert kl_of_tilt(x, math.inf, extra=-0.5 * K_C * x**2) == pytest.approx(_kl_c(math.inf), rel=0.03)


@pytest.mark.parametrize("budget", [0.5, 1.0])
def test_auto_alpha_with_constraints_meets_the_budget_of_the_whole_target(budget: float) -> None:
    x = _gaussian_1d(4096)
    prior = PriorSample(designs=x[:, None], log_weights=None, round_index=0)
    choice = choose_alpha(lambda d: d[:, 0], SamplerConfig(alpha="auto", kl_budget=budget), prior,
                          None, feasibility=lambda d: -0.5 * K_C * d[:, 0] ** 2)
    expect = 1.0 / (P * math.sqrt(2 * budget - (1 / P - 1 + math.log(P))))
    assert choice.alpha == pytest.approx(expect, rel=0.08)
    assert abs(choice.alpha - 1 / math.sqrt(2 * budget)) > 0.2  # what ignoring PoF would choose
    assert choice.kl == pytest.approx(budget, rel=1e-6)


def test_a_budget_below_the_constraints_own_kl_gives_alpha_max() -> None:
    x = _gaussian_1d(4096)
    a, kl, why = solve_alpha(x, 0.5 * _kl_c(math.inf), 1e-2, 1e2, extra=-0.5 * K_C * x**2)
    assert a == 1e2 and kl > 0.5 * _kl_c(math.inf) and "PoF factor alone" in why


def test_no_prior_round_gives_alpha_max() -> None:
    cfg = SamplerConfig(alpha="auto", alpha_max=5.0)
    choice = choose_alpha(_reward, cfg, None, None)
    assert choice.alpha == 5.0 and choice.kl is None and "no plain-prior round" in choice.reason


def test_the_brake_raises_alpha_when_the_gap_grows(caplog: pytest.LogCaptureFixture) -> None:
    cfg = SamplerConfig(alpha="auto", kl_budget=1.0, overopt_gap=0.5, overopt_factor=3.0)
    calm = choose_alpha(_reward, cfg, _prior(), OveroptGap(round_index=2, gap=0.1, scale=1.0),
                        campaign="c-brake")
    with caplog.at_level(logging.WARNING, logger="optimizer.campaign.auto_alpha"):
        braked = choose_alpha(_reward, cfg, _prior(), OveroptGap(round_index=3, gap=0.9, scale=1.0),
                              campaign="c-brake")
    assert not calm.brake and calm.alpha == calm.budget_alpha
    assert braked.brake and braked.alpha == pytest.approx(3.0 * braked.budget_alpha)
    assert braked.budget_alpha == pytest.approx(calm.alpha)
    assert braked.kl is not None and calm.kl is not None and braked.kl < calm.kl  # a weaker tilt
    assert braked.gap == pytest.approx(0.9) and "brake" in braked.reason
    assert any("c-brake" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # capped at alpha_max
    capped = choose_alpha(_reward, SamplerConfig(alpha="auto", alpha_max=0.5, overopt_gap=0.5),
                          _prior(), OveroptGap(round_index=3, gap=5.0, scale=1.0))
    assert capped.brake and capped.alpha == 0.5


def test_last_round_gap_takes_the_last_completed_tilted_round_with_predictions() -> None:
    rounds = [(0, False, [(1.0, None), (2.0, None)]),  # plain prior: no predictions
              (1, True, [(1.0, 1.5), (3.0, 3.5)]),     # gap 0.5
              (2, False, [(2.0, 4.0)])]                 # not complete yet: skipped
    gap = last_round_gap(rounds)
    assert gap is not None and gap.round_index == 1 and gap.gap == pytest.approx(0.5)
    assert gap.scale == pytest.approx(float(np.std([1.0, 2.0, 1.0, 3.0, 2.0])))
    assert last_round_gap(rounds[:1]) is None


def _cfg(sampler: dict) -> object:
    return parse_config({"name": "c", "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
                         "oracle": {"kind": "botorch"}, "sampler": sampler}, "auto.toml")


def test_config_accepts_auto_and_refuses_bad_values() -> None:
    cfg = _cfg({"alpha": "auto", "kl_budget": 2.0, "alpha_min": 0.01, "alpha_max": 10.0})
    assert cfg.sampler.alpha_auto and cfg.sampler.kl_budget == 2.0
    assert "kl_budget" not in cfg.sampler.das_options().model_dump()
    assert _cfg({"alpha": "auto"}).to_json_dict()["sampler"]["alpha"] == "auto"
    for sampler, words in [
        ({"alpha": "aut"}, ["sampler.alpha", '"auto"']),
        ({"alpha": 0.1, "kl_budget": 2.0}, ["sampler.kl_budget", 'alpha = "auto"']),
        ({"alpha": "auto", "alpha_min": 5.0, "alpha_max": 1.0}, ["sampler.alpha_min", "alpha_max"]),
        ({"alpha": "auto", "kl_budget": 0}, ["sampler.kl_budget"]),
        ({"alpha": "auto", "overopt_factor": 1.0}, ["sampler.overopt_factor"]),
    ]:
        with pytest.raises(CampaignConfigError) as err:
            _cfg(sampler)
        assert all(w in str(err.value) for w in words), str(err.value)
    assert SamplerConfig(alpha="auto").alpha_for_round(3) == 1.0  # a plain-prior round's α
