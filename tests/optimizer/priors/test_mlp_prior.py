"""MLPDiffusionPrior: protocol conformance, save/load round trip, errors, and that it learns."""
from __future__ import annotations

import json

import pytest
import torch
from prior_sampling import plain_samples

from optimizer.errors import PriorError
from optimizer.priors.base import DiffusionPrior
from optimizer.priors.mlp import MLPDiffusionConfig, MLPDiffusionPrior
from optimizer.priors.train_manifold import train_mlp_prior


@pytest.fixture
def prior(device, dtype):
    torch.manual_seed(0)
    cfg = MLPDiffusionConfig(dim=5, hidden=32, num_blocks=2, time_embed_dim=16,
                             num_train_timesteps=200)
    return MLPDiffusionPrior(cfg, data_mean=torch.arange(5.0), data_std=torch.full((5,), 2.0),
                             device=device, dtype=dtype)


def test_protocol_conformance(prior, device, dtype):
    assert isinstance(prior, DiffusionPrior)
    assert prior.latent_shape == (5,)
    assert prior.num_train_timesteps == 200 == prior.alphas_cumprod.shape[0]
    ac = prior.alphas_cumprod
    assert ac.device.type == device.type and ac.dtype == dtype
    assert bool((ac[1:] < ac[:-1]).all()) and 0 < ac[-1] < ac[0] < 1
    x = torch.randn(7, 5, device=device, dtype=dtype, requires_grad=True)
    eps = prior.predict_noise(x, 150)
    assert eps.shape == (7, 5) and eps.dtype == dtype
    eps.sum().backward()  # differentiable in x
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert prior.prepare_context(None, 4) == (1, None)
    assert prior.prepare_context(["a", "b", "c"], 4) == (3, None)
    z = torch.randn(3, 5, device=device, dtype=dtype)
    torch.testing.assert_close(prior.decode(z), torch.arange(5.0, device=device, dtype=dtype) + 2 * z)
    torch.testing.assert_close(prior.encode(prior.decode(z)), z)


def test_save_load_round_trip_identical(prior, tmp_path, device, dtype):
    prior.save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["_class_name"] == "MLPDiffusionPrior" and cfg["dim"] == 5
    loaded = MLPDiffusionPrior.from_pretrained(tmp_path / "p", device=device, dtype=dtype)
    assert loaded.config == prior.config
    x = torch.randn(6, 5, device=device, dtype=dtype)
    for t in (0, 57, 199):
        assert torch.equal(loaded.predict_noise(x, t), prior.predict_noise(x, t))
    assert torch.equal(loaded.decode(x), prior.decode(x))
    assert torch.equal(loaded.alphas_cumprod, prior.alphas_cumprod)
    assert not any(p.requires_grad for p in loaded.net.parameters())


def test_errors_name_the_problem(prior, tmp_path):
    with pytest.raises(PriorError, match=r"t=200 is outside \[0, 200\)"):
        prior.predict_noise(torch.zeros(2, 5, device=prior.device, dtype=prior.dtype), 200)
    with pytest.raises(PriorError, match=r"expected B x 5"):
        prior.predict_noise(torch.zeros(2, 4, device=prior.device, dtype=prior.dtype), 3)
    with pytest.raises(PriorError, match=r"needs config.json and model.safetensors"):
        MLPDiffusionPrior.from_pretrained(tmp_path / "nothing")
    prior.save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    (tmp_path / "p" / "config.json").write_text(json.dumps({**cfg, "hidden": 64}))
    with pytest.raises(PriorError, match=r"model.safetensors does not match .*config.json"):
        MLPDiffusionPrior.from_pretrained(tmp_path / "p")
    (tmp_path / "p" / "config.json").write_text(json.dumps({**cfg, "_class_name": "Other"}))
    with pytest.raises(PriorError, match=r"does not name _class_name='MLPDiffusionPrior'"):
        MLPDiffusionPrior.from_pretrained(tmp_path / "p")
    with pytest.raises(PriorError, match=r"both must be \(5,\)"):
        MLPDiffusionPrior(prior.config, data_mean=torch.zeros(3))


@pytest.mark.slow
def test_learns_a_bimodal_distribution():
    """Trained on two tight clusters at ±(3, -1) + (1, 1), its samples land in the clusters in
    equal shares; a prior that only standardizes (an untrained net) puts most mass between."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[4.0, 0.0], [-2.0, 2.0]])
    labels = torch.randint(0, 2, (2000,), generator=gen)
    data = centers[labels] + 0.15 * torch.randn(2000, 2, generator=gen)
    cfg = MLPDiffusionConfig(dim=2, hidden=64, num_blocks=2, time_embed_dim=16)

    def cluster_stats(p):
        x = plain_samples(p, 400, 40, seed=1).double()
        d = torch.cdist(x, centers.double())
        near = d.min(-1).values < 0.6
        return near.double().mean().item(), (d.argmin(-1)[near] == 0).double().mean().item()

    untrained, _ = train_mlp_prior(data, cfg, steps=1, seed=0)
    assert cluster_stats(untrained)[0] < 0.5
    trained, losses = train_mlp_prior(data, cfg, steps=400, batch_size=256, lr=3e-3, seed=0)
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    near, share0 = cluster_stats(trained)
    assert near > 0.85, near
    assert 0.4 < share0 < 0.6, share0
