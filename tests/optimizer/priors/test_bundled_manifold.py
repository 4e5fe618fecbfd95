"""The manifold-designs problem, its oracle, and the bundled ``manifold`` prior."""
from __future__ import annotations

import json

import pytest
import torch
from botorch.test_functions import Hartmann
from prior_sampling import plain_samples

from optimizer.priors.mlp import MLPDiffusionPrior
from optimizer.priors.registry import BUNDLED, load_prior
from oracles.errors import OracleConfigError
from oracles.simulated.base import SimulatedOracle
from oracles.simulated.manifold import K_MANIFOLD, ManifoldOracle, ManifoldProblem

H6 = Hartmann(dim=6, negate=True)


@pytest.fixture(scope="module")
def problem() -> ManifoldProblem:
    return ManifoldProblem()


def normal_direction(problem: ManifoldProblem, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A unit vector orthogonal to the manifold's tangent space at `f(u)` (`B x 6` → `B x d`).

    In rotated coordinates the Jacobian of `h` is `[I; N]`, so `n = [-Nᵀv; v]` has `Jᵀn = 0`.
    """
    z = 2 * u - 1
    W, phase = problem._params["W"], problem._params["phase"]
    arg = problem.frequency * z @ W.T + phase
    N = (problem.amplitude * problem.frequency * torch.cos(arg)).unsqueeze(-1) * W
    v = torch.randn(u.shape[0], problem.dim - K_MANIFOLD, generator=gen, dtype=torch.float64)
    n = torch.cat([-(N.transpose(1, 2) @ v.unsqueeze(-1)).squeeze(-1), v], dim=-1)
    n = n / n.norm(dim=-1, keepdim=True)
    return n @ problem._params["Q"].T


def test_projection_recovers_coordinates_on_the_manifold(problem):
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(300, 6, generator=gen, dtype=torch.float64)
    u_hat, dist = problem.project(problem.embed(u))
    torch.testing.assert_close(u_hat, u, atol=1e-9, rtol=0)
    assert float(dist.max()) < 1e-9


@pytest.mark.parametrize("delta", [0.03, 0.2])
def test_oracle_is_hartmann_on_the_manifold_and_penalizes_normal_moves(problem, delta):
    gen = torch.Generator().manual_seed(1)
    u = 0.1 + 0.8 * torch.rand(200, 6, generator=gen, dtype=torch.float64)  # interior points
    on = problem.embed(u)
    torch.testing.assert_close(problem.value(on), H6(u), atol=1e-9, rtol=0)
    off = on + delta * normal_direction(problem, u, gen)
    torch.testing.assert_close(problem.distance(off), torch.full((200,), delta, dtype=torch.float64),
                               atol=1e-7, rtol=0)
    torch.testing.assert_close(problem.value(off), H6(u) - problem.penalty * delta**2,
                               atol=1e-6, rtol=0)
    assert bool((problem.value(off) < problem.value(on)).all())


def test_maximum_is_hartmann_optimum_on_the_manifold(problem):
    x_star = problem.optimizer
    assert float(problem.distance(x_star)) < 1e-9
    assert abs(float(problem.value(x_star)) - 3.32237) < 1e-4
    assert problem.optimal_value == pytest.approx(3.32237)
    gen = torch.Generator().manual_seed(2)
    around = x_star + 0.05 * torch.randn(500, problem.dim, generator=gen, dtype=torch.float64)
    assert float(problem.value(around).max()) < problem.optimal_value


def test_projection_distance_is_no_worse_than_a_dense_search(problem):
    """Projected Gauss-Newton finds a manifold point at least as near as any of 100k samples."""
    gen = torch.Generator().manual_seed(3)
    x = problem.sample_historical(40, gen)
    grid = problem.embed(torch.rand(100_000, 6, generator=gen, dtype=torch.float64))
    brute = torch.cdist(x, grid).min(dim=1).values
    assert bool((problem.distance(x) <= brute + 1e-9).all())


def test_historical_designs_are_on_support_and_box_points_are_not(problem):
    gen = torch.Generator().manual_seed(4)
    hist = problem.sample_historical(2000, gen)
    dist = problem.distance(hist)
    expected = problem.noise_std * (problem.dim - K_MANIFOLD) ** 0.5  # σ √(d − k)
    assert abs(float(dist.mean()) / expected - 1) < 0.1
    assert float(problem.on_support(hist).double().mean()) > 0.98
    lo, hi = hist.min(0).values, hist.max(0).values
    box = lo + (hi - lo) * torch.rand(500, problem.dim, generator=gen, dtype=torch.float64)
    assert float(problem.on_support(box).double().mean()) == 0.0
    assert float(problem.value(box).max()) < float(problem.value(hist).median())


def test_manifold_oracle_scores_and_rejects(problem):
    oracle = ManifoldOracle(problem, seed=0)
    assert isinstance(oracle, SimulatedOracle) and oracle.objectives == ("value",)
    ok = oracle.evaluate("q1", problem.optimizer.numpy())
    assert ok.status == "succeeded" and abs(ok.values["value"] - 3.32237) < 1e-4
    bad = oracle.evaluate("q2", [1.0, 2.0])
    assert bad.status == "failed" and "expected a design of 16 numbers, got shape (2,)" in bad.error
    noisy = ManifoldOracle(problem, noise_std=0.1, seed=5)
    a, b = (noisy.evaluate("k", problem.optimizer.numpy()).values["value"] for _ in range(2))
    assert a == b != ok.values["value"]  # seeded per key


def test_problem_config_errors_name_the_field():
    with pytest.raises(OracleConfigError, match=r"dim=8 is too small; .* needs dim >= 10"):
        ManifoldProblem(dim=8)
    with pytest.raises(OracleConfigError, match=r"noise_std=0.0 must be > 0"):
        ManifoldProblem(noise_std=0.0)
    with pytest.raises(ValueError, match=r"must be B x 16"):
        ManifoldProblem().distance(torch.zeros(3, 12))


def test_bundled_manifold_prior_samples_lie_near_the_manifold(problem):
    """The bundled prior's samples lie as near the manifold as the training data (a little
    nearer: 50 ancestral steps under-disperse the noise) and cover the manifold coordinates like
    the data (uniform on [0, 1]^6). An untrained or mis-scaled prior puts samples at distance ~1."""
    prior = load_prior("manifold")
    assert isinstance(prior, MLPDiffusionPrior) and prior.latent_shape == (problem.dim,)

    x = plain_samples(prior, 1000, 50, seed=0).double()
    u, dist = problem.project(x)
    data_dist = problem.distance(problem.sample_historical(1000, torch.Generator().manual_seed(9)))
    ratio = float(dist.median() / data_dist.median())
    assert 0.4 < ratio < 1.25, ratio
    assert float(dist.quantile(0.95)) < 1.25 * float(data_dist.quantile(0.95))
    assert float(problem.on_support(x).double().mean()) >= 0.95
    # Uniform coordinates: mean 1/2, std 1/√12 ≈ 0.289 per coordinate.
    assert float((u.mean(0) - 0.5).abs().max()) < 0.05
    assert float((u.std(0) - 12 ** -0.5).abs().max()) < 0.04
    meta = json.loads((BUNDLED["manifold"].path / "training.json").read_text())
    assert meta["seed"] == 0 and meta["problem"]["dim"] == problem.dim
