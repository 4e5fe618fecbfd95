"""Tempering schedules: the paper's exponential one, polynomial, and adaptive bisection."""
from __future__ import annotations

import pytest
import torch

from optimizer.smc.errors import SMCConfigError
from optimizer.smc.tempering import (
    AdaptiveTempering,
    ExponentialTempering,
    PolynomialTempering,
    make_tempering,
)
from optimizer.smc.weights import conditional_ess_fraction


def _run(schedule, K, device, G=1):
    lam = torch.zeros(G, device=device)
    out = []
    for k in range(1, K + 1):
        lam = schedule.next_lambda(k, K, lam, torch.zeros(G, 4, device=device),
                                   torch.zeros(G, 4, device=device))
        out.append(lam[0].item())
    return out


def test_exponential_reproduces_the_paper(device):
    lams = _run(ExponentialTempering(gamma=0.008), 100, device)
    assert lams[0] == pytest.approx(0.008)
    assert lams[9] == pytest.approx(1.008**10 - 1)
    assert lams[85] < 1.0 and lams[86] == 1.0  # (1.008)^87 - 1 >= 1: reaches 1 at step 87
    # Default gamma: reaches 1 at 87 % of the steps for any K (γ = 0.008 at K = 100).
    assert ExponentialTempering().value(1, 100) == pytest.approx(0.008, rel=2e-3)
    lams20 = _run(ExponentialTempering(), 20, device)
    assert lams20[16] < 1.0 and lams20[17] == 1.0


def test_polynomial_values_and_monotonicity(device):
    lams = _run(PolynomialTempering(power=2.0), 10, device)
    assert lams[4] == pytest.approx(0.25) and lams[-1] == 1.0
    assert all(b >= a for a, b in zip(lams, lams[1:]))


def test_adaptive_hits_the_target_cess_per_group(device):
    g = torch.Generator(device=device).manual_seed(0)
    r = torch.randn(3, 400, generator=g, device=device) * torch.tensor([[1.0], [10.0], [100.0]],
                                                                      device=device)
    log_w = torch.randn(3, 400, generator=g, device=device) * 0.3
    cur = torch.tensor([0.1, 0.2, 0.0], device=device)
    sched = AdaptiveTempering(target=0.8, cap=None, floor=None)
    lam = sched.next_lambda(5, 100, cur, r, log_w)
    assert torch.all(lam > cur) and torch.all(lam < 1)
    frac = conditional_ess_fraction(log_w, (lam - cur)[:, None] * r)
    torch.testing.assert_close(frac, torch.full_like(frac, 0.8), atol=1e-3, rtol=0)
    # larger reward spread → smaller step
    steps = lam - cur
    assert steps[0] > steps[1] > steps[2]


def test_adaptive_jumps_to_one_for_flat_rewards_unless_capped(device):
    cur = torch.zeros(2, device=device)
    flat = torch.ones(2, 16, device=device)
    zeros = torch.zeros(2, 16, device=device)
    uncapped = AdaptiveTempering(cap=None, floor=None).next_lambda(1, 100, cur, flat, zeros)
    assert uncapped.tolist() == [1.0, 1.0]
    capped = AdaptiveTempering().next_lambda(1, 100, cur, flat, zeros)
    torch.testing.assert_close(capped, torch.full_like(capped, ExponentialTempering().value(1, 100)))


def test_adaptive_respects_floor_and_never_decreases(device):
    cur = torch.tensor([0.5], device=device)
    huge = torch.tensor([[0.0, 1e6]], device=device)
    lam = AdaptiveTempering(floor=PolynomialTempering(power=1.0)).next_lambda(
        90, 100, cur, huge, torch.zeros(1, 2, device=device))
    assert lam.item() == pytest.approx(0.9)
    lam = AdaptiveTempering(floor=None).next_lambda(
        10, 100, cur, huge, torch.zeros(1, 2, device=device))
    assert lam.item() >= 0.5


def test_adaptive_ignores_nan_rewards_without_nan_output(device):
    r = torch.tensor([[0.0, float("nan"), 1.0, -float("inf")]], device=device)
    lam = AdaptiveTempering().next_lambda(3, 10, torch.zeros(1, device=device), r,
                                          torch.zeros(1, 4, device=device))
    assert torch.isfinite(lam).all()


def test_names_and_errors():
    assert isinstance(make_tempering("adaptive"), AdaptiveTempering)
    assert isinstance(make_tempering("exponential"), ExponentialTempering)
    assert isinstance(make_tempering("polynomial"), PolynomialTempering)
    custom = PolynomialTempering(power=1.0)
    assert make_tempering(custom) is custom
    with pytest.raises(SMCConfigError,
                       match=r"tempering='linear'.*adaptive, exponential, polynomial"):
        make_tempering("linear")
    with pytest.raises(SMCConfigError, match="neither a name"):
        make_tempering(3.0)
    with pytest.raises(SMCConfigError, match=r"target=1.5 must be in \(0, 1\)"):
        AdaptiveTempering(target=1.5)
    with pytest.raises(SMCConfigError, match="gamma=-0.1 must be > 0"):
        ExponentialTempering(gamma=-0.1)


def test_multi_point_search_agrees_with_plain_bisection(device):
    g = torch.Generator(device=device).manual_seed(4)
    r = torch.randn(4, 300, generator=g, device=device, dtype=torch.float64) * 20
    log_w = torch.zeros(4, 300, device=device, dtype=torch.float64)
    cur = torch.tensor([0.0, 0.1, 0.5, 0.9], device=device, dtype=torch.float64)
    plain = AdaptiveTempering(target=0.7, rounds=40, points=2, cap=None, floor=None)
    multi = AdaptiveTempering(target=0.7, cap=None, floor=None)
    torch.testing.assert_close(multi.next_lambda(3, 50, cur, r, log_w),
                               plain.next_lambda(3, 50, cur, r, log_w), atol=2e-6, rtol=0)
    with pytest.raises(SMCConfigError, match="points=1 must be >= 2"):
        AdaptiveTempering(points=1)
    with pytest.raises(SMCConfigError, match="rounds=0 must be >= 1"):
        AdaptiveTempering(rounds=0)
