"""The GP surrogate: recovery of a known function, noise awareness, objectives, approximations,
warm start, degenerate data."""
from __future__ import annotations

import pytest
import torch
from botorch.models import ModelListGP, SingleTaskGP
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from surrogate_dummies import get_dummy_surrogate, smooth_f

from optimizer.errors import SurrogateError
from optimizer.surrogate import PCAFeatures, Surrogate, SurrogateConfig

F64 = torch.float64


def _data(n, seed, noise=0.05, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=F64)
    Y = smooth_f(X) + noise * torch.randn(n, 1, generator=g, dtype=F64)
    return X.to(device), Y.to(device)


def test_recovers_a_smooth_function_from_noisy_samples(device):
    X, Y = _data(60, seed=0, device=device)
    sur = Surrogate.fit(X, Y)
    Xt, _ = _data(400, seed=1, device=device)
    mean, std = sur.posterior_mean_std(Xt)
    truth = smooth_f(Xt)
    rmse = float(((mean - truth) ** 2).mean().sqrt())
    # f varies by ~1 over the square; a constant predictor has RMSE ~0.25, noise std is 0.05
    assert rmse < 0.05, rmse
    assert sur.fit_info.fit_ok == (True,)
    # calibrated: most held-out errors within 3 std (latent std + nothing else)
    z = ((mean - truth).abs() / std).flatten()
    assert float((z < 3).double().mean()) > 0.9
    assert isinstance(sur.model, SingleTaskGP)


def test_reported_noise_is_the_observation_noise():
    X = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.1, 0.9], [0.9, 0.1]], dtype=F64)
    Y = torch.tensor([[1.0], [5.0], [0.0], [0.0]], dtype=F64)
    Yvar = torch.tensor([[1e-4], [100.0], [1e-4], [1e-4]], dtype=F64)
    sur = Surrogate.fit(X, Y, Yvar, config=SurrogateConfig(fit_maxiter=50))
    assert isinstance(sur.model.likelihood, FixedNoiseGaussianLikelihood)
    mean, _ = sur.posterior_mean_std(X[:1])
    # the precise y=1 dominates the very noisy y=5 at the same design
    assert abs(float(mean) - 1.0) < 0.1, float(mean)


def test_several_objectives_make_a_model_list():
    sur = get_dummy_surrogate(n=12, num_objectives=2, with_yvar=True)
    assert isinstance(sur.model, ModelListGP) and sur.num_objectives == 2
    mean, std = sur.posterior_mean_std(torch.rand(5, 2, dtype=F64))
    assert mean.shape == std.shape == (5, 2)
    assert (std > 0).all()


def test_subset_fit_conditions_on_all_data_and_still_recovers():
    X, Y = _data(90, seed=2)
    cfg = SurrogateConfig(fit_subset_size=30, max_conditioning_size=90)
    sur = Surrogate.fit(X, Y, config=cfg)
    info = sur.fit_info
    assert (info.num_observations, info.num_fit, info.num_conditioning) == (90, 30, 90)
    Xt, _ = _data(300, seed=3)
    mean, _ = sur.posterior_mean_std(Xt)
    assert float(((mean - smooth_f(Xt)) ** 2).mean().sqrt()) < 0.06
    # the posterior interpolates points that were not in the hyperparameter subset
    assert float((sur.posterior_mean_std(X)[0] - Y).abs().mean()) < 0.08


def test_conditioning_subset_above_the_limit_keeps_the_best():
    X, Y = _data(60, seed=4)
    sur = Surrogate.fit(X, Y, config=SurrogateConfig(fit_subset_size=20,
                                                     max_conditioning_size=40))
    assert sur.fit_info.num_conditioning == 40
    best = int(Y.argmax())
    assert best in sur.cond_idx.tolist()


def test_warm_start_from_previous_state():
    X, Y = _data(12, seed=5)
    cfg = SurrogateConfig(fit_maxiter=30)
    first = Surrogate.fit(X, Y, config=cfg)
    X2, Y2 = _data(6, seed=6)
    again = Surrogate.fit(torch.cat([X, X2]), torch.cat([Y, Y2]), previous=first.state(),
                          config=cfg)
    assert again.fit_info.warm_started
    # a state with another number of objectives cannot warm-start: cold start, said so
    two = get_dummy_surrogate(n=8, num_objectives=2)
    cold = Surrogate.fit(X, Y, previous=two.state(), config=SurrogateConfig(fit_maxiter=20))
    assert not cold.fit_info.warm_started


def test_pca_features_in_the_loop():
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(200, 3, 4, generator=g, dtype=F64)
    fm = PCAFeatures.fit(prior, k=3)
    X = torch.randn(15, 3, 4, generator=g, dtype=F64)
    Y = fm(X)[:, :1].sin()
    sur = Surrogate.fit(X, Y, feature_map=fm, config=SurrogateConfig(fit_maxiter=50))
    assert sur.design_shape == (3, 4)
    assert sur.posterior_mean_std(X[:4])[0].shape == (4, 1)
    with pytest.raises(SurrogateError, match=r"fitted on designs of shape \(3, 4\)"):
        sur.posterior_mean_std(torch.randn(2, 12, dtype=F64))


# ---------------------------------------------------------------- degenerate data
def test_constant_results_fit_and_predict_the_constant():
    X = torch.rand(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    sur = Surrogate.fit(X, torch.full((6, 1), 3.0, dtype=F64),
                        config=SurrogateConfig(fit_maxiter=30))
    mean, std = sur.posterior_mean_std(torch.rand(4, 2, dtype=F64))
    assert torch.allclose(mean, torch.full_like(mean, 3.0), atol=1e-6)
    assert torch.isfinite(std).all()


def test_single_observation():
    X = torch.tensor([[0.2, 0.4]], dtype=F64)
    sur = Surrogate.fit(X, torch.tensor([[1.5]], dtype=F64), config=SurrogateConfig(fit_maxiter=20))
    mean, std = sur.posterior_mean_std(X)
    assert abs(float(mean) - 1.5) < 1e-3 and torch.isfinite(std).all()


@pytest.mark.parametrize("with_yvar", [False, True])
def test_duplicate_designs(with_yvar):
    X = torch.tensor([[0.2, 0.4], [0.2, 0.4], [0.2, 0.4], [0.8, 0.1]], dtype=F64)
    Y = torch.tensor([[1.0], [1.2], [0.8], [0.0]], dtype=F64)
    Yvar = torch.zeros_like(Y) if with_yvar else None  # zero noise: floored at min_noise
    sur = Surrogate.fit(X, Y, Yvar, config=SurrogateConfig(fit_maxiter=30))
    mean, std = sur.posterior_mean_std(X[:1])
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    assert abs(float(mean) - 1.0) < 0.2


@pytest.mark.parametrize(
    ("field", "row", "pattern"),
    [("Y", 3, r"Y has NaN or infinite values in row 3; drop those observations"),
     ("X", 1, r"X has NaN or infinite values in row 1"),
     ("Yvar", 2, r"Yvar has NaN or infinite values in row 2")],
)
def test_nan_rows_are_rejected_with_the_row(field, row, pattern):
    X = torch.rand(5, 2, dtype=F64)
    data = {"X": X, "Y": torch.rand(5, 1, dtype=F64), "Yvar": torch.full((5, 1), 0.01, dtype=F64)}
    data[field][row, 0] = float("nan")
    with pytest.raises(SurrogateError, match=pattern):
        Surrogate.fit(data["X"], data["Y"], data["Yvar"])


def test_bad_shapes_and_noise_are_explained():
    X = torch.rand(5, 2, dtype=F64)
    with pytest.raises(SurrogateError, match="Y has shape \\(4, 1\\) but X has 5 rows"):
        Surrogate.fit(X, torch.rand(4, 1, dtype=F64))
    Yvar = torch.ones(5, 1, dtype=F64)
    Yvar[2, 0] = -0.1
    with pytest.raises(SurrogateError, match="negative noise variances in row 2; a variance"):
        Surrogate.fit(X, torch.rand(5, 1, dtype=F64), Yvar)
    with pytest.raises(SurrogateError, match="no observations"):
        Surrogate.fit(X[:0], torch.rand(0, 1, dtype=F64))


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_noise_floor_is_relative_to_the_outcome_scale(scale):
    """Noiseless results (`Yvar = 0`) in any unit: rescaling `Y` by c (and `Yvar` by c²)
    rescales the posterior mean by c. An absolute floor (1e-6 squared units) would drown
    results of scale 1e-4 in noise of std 1e-3 and flatten the surrogate."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(20, 2, generator=g, dtype=F64)
    Y = torch.sin(6 * X[:, :1]) + X[:, 1:] ** 2
    Xt = torch.rand(30, 2, generator=g, dtype=F64)
    cfg = SurrogateConfig(fit_maxiter=60)
    base = Surrogate.fit(X, Y, torch.zeros_like(Y), config=cfg)
    scaled = Surrogate.fit(X, scale * Y, torch.zeros_like(Y), config=cfg)
    m_base, _ = base.posterior_mean_std(Xt)
    m_scaled, _ = scaled.posterior_mean_std(Xt)
    torch.testing.assert_close(m_scaled / scale, m_base, rtol=0, atol=1e-3)
    # noiseless data are interpolated
    torch.testing.assert_close(scaled.posterior_mean_std(X)[0] / scale, Y, rtol=0, atol=1e-3)
