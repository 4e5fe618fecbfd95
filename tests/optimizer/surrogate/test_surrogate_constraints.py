"""Outcome constraints in the surrogate: log PoF against the closed form, the reward's
`α log PoF` term (and its gradient), the state round trip, the 3-d Pareto layers, and screening
that picks feasible designs where the unconstrained optimum is infeasible."""
from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from scipy.stats import norm

from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.constraints import Z_GRAD, log_pof, pareto_layers_nd
from optimizer.surrogate.gp import Surrogate
from optimizer.surrogate.prefilter import pareto_keep
from optimizer.surrogate.screening import screen
from optimizer.surrogate.state import SurrogateState

#: the objective's unconstrained optimum (0.8, 0.6) is infeasible under x0 <= 0.5
OPT = torch.tensor([0.8, 0.6], dtype=torch.float64)


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, 2, generator=g, dtype=torch.float64)
    y = -((X - OPT) ** 2).sum(-1, keepdim=True)
    c = X[:, :1] - 0.5  # slack: feasible iff x0 <= 0.5
    return X, torch.cat([y, c], -1)


@pytest.fixture(scope="module")
def fitted() -> tuple[Surrogate, torch.Tensor, torch.Tensor]:
    X, Y = _data()
    return Surrogate.fit(X, Y, config=SurrogateConfig(num_constraints=1)), X, Y


def test_log_pof_matches_the_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(50, 3, generator=g, dtype=torch.float64) * 2
    var = torch.rand(50, 3, generator=g, dtype=torch.float64) + 0.05
    terms = norm.logcdf((-mean / var.sqrt()).numpy())
    assert (terms < -25).any() and (terms > -1).any()  # both regimes are checked
    got = log_pof(mean, var)
    assert torch.allclose(got, torch.from_numpy(terms.sum(-1)), rtol=1e-10, atol=1e-10)
    # PoF itself: the product of independent feasibility probabilities
    pof = torch.from_numpy(norm.cdf((-mean / var.sqrt()).numpy()).prod(-1))
    assert torch.allclose(got.exp(), pof, rtol=1e-9, atol=0)
    assert torch.equal(log_pof(mean[:, :0], var[:, :0]), torch.zeros(50, dtype=torch.float64))
    # far in the infeasible tail the value is still finite (float32 too)
    for dtype in (torch.float32, torch.float64):
        assert torch.isfinite(log_pof(torch.tensor([[1e9]], dtype=dtype),
                                      torch.tensor([[1e-14]], dtype=dtype))).all()


def test_far_infeasible_designs_keep_their_ranking() -> None:
    """Two designs deep in the infeasible tail (each `log Φ` far below −25, where a floor made
    them tie) rank by their probability of feasibility, as the closed form does; and the ranking
    of a reward `r + α log PoF` follows it."""
    mean = torch.tensor([[8.0], [40.0], [400.0]], dtype=torch.float64)
    var = torch.ones(3, 1, dtype=torch.float64)
    lp = log_pof(mean, var)
    want = norm.logcdf(-mean.numpy().ravel())
    assert (want < -25).all()
    assert torch.allclose(lp, torch.from_numpy(want), rtol=1e-10)
    assert bool(lp[0] > lp[1] > lp[2])  # strictly: no tie
    # a design with a slightly better objective but e^-700 times less likely feasible loses
    reward = torch.tensor([1.0, 1.1], dtype=torch.float64) + 0.3 * lp[:2]
    assert bool(reward[0] > reward[1])


def test_log_pof_gradient_is_exact_above_and_held_below_z_grad() -> None:
    mean = torch.tensor([[0.0], [3.0], [6.0], [50.0], [1e6]], dtype=torch.float64,
                        requires_grad=True)
    log_pof(mean, torch.ones(5, 1, dtype=torch.float64)).sum().backward()
    assert mean.grad is not None
    grad = mean.grad.ravel()
    # d/dμ log Φ(−μ) = −φ(μ)/Φ(−μ): exact down to z = −Z_GRAD
    mu = mean.detach().numpy().ravel()[:3]
    exact = -torch.from_numpy(norm.pdf(mu) / norm.cdf(-mu))
    assert torch.allclose(grad[:3], exact, rtol=1e-8)
    held = -norm.pdf(-Z_GRAD) / norm.cdf(Z_GRAD)
    assert torch.allclose(grad[3:], torch.full((2,), held, dtype=torch.float64), rtol=1e-8)
    assert bool((grad[3:] < 0).all())  # still pushing toward feasibility


def test_reward_adds_alpha_log_pof(fitted) -> None:
    sur, _, _ = fitted
    alpha = 0.3
    Xq = torch.rand(40, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mean, std = sur.posterior_mean_std(Xq)
    plain = sur.reward(beta=1.0)(Xq)
    constrained = sur.reward(beta=1.0, alpha=alpha)(Xq)
    lp = norm.logcdf((-mean[:, 1] / std[:, 1]).numpy())
    assert torch.allclose(constrained - plain, alpha * torch.from_numpy(lp), atol=1e-6)
    # the objective part is the objective column's UCB alone (the constraint is not scalarized)
    assert torch.allclose(plain, mean[:, 0] + std[:, 0], atol=1e-6)
    # differentiable: guided SMC gets a finite gradient, pointing away from infeasibility
    x = torch.tensor([[0.5, 0.3]], dtype=torch.float64, requires_grad=True)  # on the boundary
    (sur.reward(beta=0.0, alpha=alpha)(x) - sur.reward(beta=0.0)(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad[0, 0]) < 0


def test_log_feasibility_is_the_log_pof_factor_of_the_reward(fitted) -> None:
    sur, _, _ = fitted
    Xq = torch.rand(40, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mean, std = sur.posterior_mean_std(Xq)
    lp = sur.reward(beta=1.0).log_feasibility(Xq)
    assert torch.allclose(lp, torch.from_numpy(norm.logcdf((-mean[:, 1] / std[:, 1]).numpy())),
                          atol=1e-6)
    X, Y = _data()
    free = Surrogate.fit(X, Y[:, :1], config=SurrogateConfig())
    assert torch.equal(free.reward(beta=1.0).log_feasibility(Xq), torch.zeros(40, dtype=Xq.dtype))


def test_state_round_trip_keeps_the_constraint_columns(fitted) -> None:
    sur, X, Y = fitted
    again = Surrogate.from_state(SurrogateState.from_bytes(sur.state().to_bytes()), X, Y)
    assert again.config.num_constraints == 1
    Xq = torch.rand(16, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(again.reward(beta=1.0, alpha=0.2)(Xq), sur.reward(beta=1.0, alpha=0.2)(Xq))


def test_pareto_layers_nd_match_brute_force() -> None:
    g = torch.Generator().manual_seed(4)
    P = torch.randint(0, 5, (60, 3), generator=g).double()  # ties on purpose
    layer = pareto_layers_nd(P)
    for i in range(60):
        dominators = [j for j in range(60) if bool((P[j] >= P[i]).all() and (P[j] > P[i]).any())]
        # a point's layer is one more than the deepest layer among its dominators
        assert int(layer[i]) == (max(int(layer[j]) for j in dominators) + 1 if dominators else 0)


def test_prefilter_keeps_the_feasible_candidates() -> None:
    # the 20 best (mean, std) candidates are certainly infeasible; 2-d layers would keep only
    # them, the third axis (log PoF) keeps the best feasible ones too
    mean = torch.cat([torch.linspace(2, 3, 20), torch.linspace(0, 1, 20)]).double()
    std = torch.cat([torch.linspace(1, 2, 20).flip(0), torch.linspace(0.1, 0.5, 20).flip(0)]).double()
    lp = torch.cat([torch.full((20,), -20.0), torch.zeros(20)]).double()
    assert not pareto_keep(mean, std, mean, 20)[20:].any()
    kept = pareto_keep(mean, std, mean + lp, 24, extra=lp)
    assert bool(kept[20:].any()) and bool(kept[39])  # the best feasible mean


@pytest.mark.parametrize("acquisition", ["qlognei", "qucb"])
def test_screening_picks_feasible_designs(fitted, acquisition: Literal["qlognei", "qucb"]) -> None:
    sur, X, Y = fitted
    cand = torch.rand(300, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    con = Surrogate.fit(X, Y, config=SurrogateConfig(num_constraints=1, acquisition=acquisition))
    picked = cand[screen(con, cand, 4, acquisition=acquisition, seed=1).selected]
    # feasible, or within the constraint GP's uncertainty of the boundary (the optimum is at 0.8)
    assert len(picked) == 4 and bool((picked[:, 0] <= 0.52).all()), picked
    assert int((picked[:, 0] <= 0.5).sum()) >= 3, picked
    # the same data without the constraint: the picks go to the infeasible optimum
    free = Surrogate.fit(X, Y[:, :1], config=SurrogateConfig(acquisition=acquisition))
    unconstrained = cand[screen(free, cand, 4, acquisition=acquisition, seed=1).selected]
    assert int((unconstrained[:, 0] > 0.5).sum()) >= 3, unconstrained
    assert math.isfinite(float(sur.reward(alpha=0.1)(picked).detach().sum()))


@pytest.mark.parametrize("guidance", ["none", "gradient", "tweedie"])
def test_das_samples_the_feasible_half(guidance: Literal["none", "gradient", "tweedie"]) -> None:
    """DAS on the gmm-toy prior (modes at {-4, 0, 4}²) with a surrogate whose constraint is
    `x₀ ≤ 0` and whose objective prefers large `x₀`: the target `p·exp(r̂/α)·PoF` puts its mass
    on the feasible half (without the PoF term, on the infeasible one), guided or not."""
    from optimizer.das import sample
    from optimizer.priors.registry import gmm_toy_means, gmm_toy_prior

    g = torch.Generator().manual_seed(6)
    X = gmm_toy_means()[torch.randint(0, 9, (40,), generator=g)] + 0.5 * torch.randn(
        40, 2, generator=g, dtype=torch.float64)
    Y = torch.stack([X[:, 0] / 4, X[:, 0]], -1)  # objective x0 / 4, slack x0 (feasible: x0 <= 0)
    sur = Surrogate.fit(X, Y, config=SurrogateConfig(num_constraints=1))
    prior = gmm_toy_prior()
    out = {}
    for alpha in (0.5, None):
        reward = sur.reward(beta=0.0, alpha=alpha)
        res = sample(prior, reward, num_particles=128, alpha=0.5, num_steps=20, guidance=guidance,
                     generator=torch.Generator().manual_seed(0))
        w = torch.softmax(res.log_weights.reshape(-1).double(), 0)
        x = res.samples.detach().double()
        assert torch.isfinite(x).all()
        out[alpha] = float((w * (x[:, 0] <= 0.5).double()).sum())  # feasible mass (with margin)
    assert out[0.5] >= 0.9 and out[None] <= 0.5, out
