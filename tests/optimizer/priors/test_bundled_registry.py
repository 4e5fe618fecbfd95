"""Registry: bundled names and paths load, unknown ones fail with the list of valid names,
every bundled prior has its feature map and support check, and the bundle stays small."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from optimizer.errors import PriorError
from optimizer.priors.base import DiffusionPrior
from optimizer.priors.diffusers_pixel import PixelDiffusersPrior
from optimizer.priors.gaussian_mixture import GaussianMixturePrior
from optimizer.priors.mlp import MLPDiffusionPrior
from optimizer.priors.registry import (
    BUNDLE_ROOT,
    BUNDLED,
    detect_kind,
    load_feature_map,
    load_prior,
)
from optimizer.features import (
    EmbeddingFeatures,
    IdentityFeatures,
    feature_map_from_record,
)


def test_bundled_names_load_as_priors(device, dtype):
    digits = load_prior("digits", device=device, dtype=dtype)
    assert isinstance(digits, PixelDiffusersPrior) and digits.latent_shape == (1, 8, 8)
    manifold = load_prior("manifold", device=device, dtype=dtype)
    assert isinstance(manifold, MLPDiffusionPrior) and manifold.latent_shape == (16,)
    toy = load_prior("gmm-toy", device=device, dtype=dtype)
    assert isinstance(toy, GaussianMixturePrior)
    expected = torch.cartesian_prod(*[torch.tensor([-4.0, 0.0, 4.0])] * 2)
    torch.testing.assert_close(toy.means.cpu().float(), expected)
    torch.testing.assert_close(toy.covariances.cpu().float(), 0.3 * torch.eye(2).repeat(9, 1, 1))
    for prior in (digits, manifold, toy):
        assert isinstance(prior, DiffusionPrior)
        assert prior.alphas_cumprod.dtype == dtype
        x = torch.randn(3, *prior.latent_shape, device=device, dtype=dtype)
        assert prior.predict_noise(x, 500).shape == x.shape


def test_paths_load_by_detected_kind(tmp_path):
    assert detect_kind(BUNDLE_ROOT / "digits") == "pixel-diffusers"
    assert detect_kind(BUNDLE_ROOT / "manifold") == "mlp-diffusion"
    assert isinstance(load_prior(str(BUNDLE_ROOT / "manifold")), MLPDiffusionPrior)
    copy = tmp_path / "my-digits"
    shutil.copytree(BUNDLE_ROOT / "digits", copy)
    prior = load_prior(copy)
    assert isinstance(prior, PixelDiffusersPrior)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(prior.predict_noise(x, 10), load_prior("digits").predict_noise(x, 10))


def test_unknown_name_or_path_lists_the_valid_names(tmp_path):
    msg = r"prior 'digitz' is neither a bundled prior nor an existing folder; use one of: " \
          r"digits, gmm-toy, manifold, or a path"
    with pytest.raises(PriorError, match=msg):
        load_prior("digitz")
    with pytest.raises(PriorError, match=r"use one of: digits, gmm-toy, manifold"):
        load_feature_map(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorError, match=r"holds no known layout: expected unet/ \+ scheduler/"):
        load_prior(tmp_path / "empty")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(PriorError, match=r"is a file; pass the folder"):
        load_prior(tmp_path / "weights.bin")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text("[1, 2")
    with pytest.raises(PriorError, match=r"config.json is not a JSON object"):
        load_prior(tmp_path / "cfg")


def test_feature_maps(device):
    assert isinstance(load_feature_map("manifold"), IdentityFeatures)
    assert isinstance(load_feature_map("gmm-toy"), IdentityFeatures)
    phi = load_feature_map("digits")
    assert isinstance(phi, EmbeddingFeatures) and phi.differentiable
    x = (torch.rand(5, 1, 8, 8) * 2 - 1).requires_grad_(True)
    z = phi(x)
    assert z.shape == (5, 32)
    z.sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert not any(p.requires_grad for p in phi.module.parameters())
    # A stored campaign rebuilds the same map by reference, weights checked.
    record, tensors = phi.to_record()
    rebuilt = feature_map_from_record(json.loads(json.dumps(record)), tensors, allow_import=True)
    assert torch.equal(rebuilt(x.detach()), z.detach())


def test_support_checks_separate_valid_from_invalid_designs():
    gen = torch.Generator().manual_seed(0)
    toy = BUNDLED["gmm-toy"]
    exact = load_prior("gmm-toy", dtype=torch.float64).sample_exact(4000, generator=gen)
    frac = BUNDLED["gmm-toy"].support_check()(exact).double().mean().item()
    assert abs(frac - 0.99) < 0.01  # the check is the 99% Mahalanobis ball of each mode
    between = torch.tensor([[2.0, 2.0], [-2.0, 0.0], [6.5, 0.0]])
    assert not bool(toy.support_check()(between).any())

    from oracles.simulated.manifold import ManifoldProblem

    problem = ManifoldProblem()
    on = BUNDLED["manifold"].support_check()
    hist = problem.sample_historical(500, gen)
    assert on(hist).double().mean().item() > 0.98
    assert not bool(on(hist + 0.3 * torch.randn(hist.shape, generator=gen, dtype=hist.dtype)).any())
    assert "distance to the manifold <= 0.1" in on.description


def test_bundle_files_are_small_and_documented():
    files = [p for p in BUNDLE_ROOT.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    for p in files:
        assert p.stat().st_size <= 5 * 2**20, p
        assert p.suffix in {".json", ".safetensors"}, p  # no pickles
    for name in ("digits", "manifold"):
        meta = json.loads((BUNDLED[name].path / "training.json").read_text())
        assert meta["seed"] == 0 and meta["command"].startswith("python -m optimizer.priors.train_")
    assert (BUNDLE_ROOT / "digits" / "classifier" / "classifier.safetensors").stat().st_size <= 2**20


def test_gmm_toy_closed_form_target_matches_the_paper():
    """At α = 1 the exact tilted target's mean reward is the paper's -0.29, and its closed form
    agrees with self-normalized importance weighting of exact prior draws."""
    from optimizer.priors.registry import gmm_toy_reward, gmm_toy_target

    A = torch.diag(torch.tensor([0.02, 2.0], dtype=torch.float64))
    target = gmm_toy_target(1.0)
    exact = float(target.mixture.expected_quadratic(A, torch.zeros(2, dtype=torch.float64)))
    assert exact == pytest.approx(-0.2907, abs=5e-4)
    gen = torch.Generator().manual_seed(0)
    draws = load_prior("gmm-toy", dtype=torch.float64).sample_exact(200_000, generator=gen)
    r = gmm_toy_reward(draws)
    w = torch.softmax(r, 0)
    assert float((w * r).sum()) == pytest.approx(exact, abs=0.02)
    assert float(torch.logsumexp(r, 0) - torch.log(torch.tensor(2e5))) == pytest.approx(
        float(target.log_normalizer), abs=0.02)
