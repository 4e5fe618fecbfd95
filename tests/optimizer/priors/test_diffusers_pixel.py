"""PixelDiffusersPrior: protocol, ε conversion against diffusers' scheduler math, loading, errors."""
from __future__ import annotations

import json
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers_dummies import dummy_pixel_unet, dummy_scheduler, get_dummy_pixel_prior

from optimizer.errors import PriorError
from optimizer.priors.base import DiffusionPrior, tweedie_x0
from optimizer.priors.diffusers_common import to_epsilon
from optimizer.priors.diffusers_pixel import PixelDiffusersPrior

@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pixel")
    PixelDiffusersPrior(dummy_pixel_unet(), dummy_scheduler()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def prior(folder: Path, device: torch.device, dtype: torch.dtype) -> PixelDiffusersPrior:
    return PixelDiffusersPrior.from_pretrained(folder, device=device, dtype=dtype)


@pytest.fixture(scope="module")
def class_prior(tmp_path_factory, device, dtype) -> PixelDiffusersPrior:
    path = tmp_path_factory.mktemp("pixel_cls")
    return get_dummy_pixel_prior(path, num_class_embeds=3, device=device, dtype=dtype)


def _noisy(prior, rows: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, *prior.latent_shape, generator=gen).to(prior.device, prior.dtype)


def test_conforms_to_protocol(prior, device) -> None:
    assert isinstance(prior, DiffusionPrior)
    assert prior.latent_shape == (3, 8, 8)
    assert prior.num_train_timesteps == 1000
    abar = prior.alphas_cumprod
    assert abar.shape == (1000,) and abar.device.type == device.type
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < float(abar[-1]) < float(abar[0]) < 1
    expected = dummy_scheduler().alphas_cumprod.double()
    torch.testing.assert_close(abar.double().cpu(), expected, rtol=1e-6, atol=0)


def test_predict_noise_is_the_unet_and_differentiable(prior) -> None:
    x = _noisy(prior, 4).requires_grad_(True)
    eps = prior.predict_noise(x, 500)
    assert eps.shape == x.shape and eps.dtype == x.dtype
    direct = prior.unet(x, torch.full((4,), 500, device=x.device)).sample
    torch.testing.assert_close(eps, direct)
    eps.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in prior.unet.parameters())  # weights are frozen


def test_decode_is_identity(prior) -> None:
    x0 = _noisy(prior, 2)
    assert prior.decode(x0) is x0


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("t", [0, 37, 999])
def test_epsilon_conversion_matches_scheduler_step(tmp_path, device, kind: str, t: int) -> None:
    """x̂0 from our ε equals diffusers' DDPMScheduler.step pred_original_sample for that output."""
    prior = get_dummy_pixel_prior(tmp_path, prediction_type=kind, device=device, dtype=torch.float64)
    assert prior.prediction_type == kind
    x = _noisy(prior, 3, seed=t)
    out = prior.unet(x, torch.full((3,), t, device=device)).sample
    x0_ours = tweedie_x0(x, prior.predict_noise(x, t), prior.alphas_cumprod[t])
    scheduler = dummy_scheduler(kind)
    x0_ref = scheduler.step(out.cpu(), t, x.cpu()).pred_original_sample
    torch.testing.assert_close(x0_ours.cpu(), x0_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_to_epsilon_inverts_add_noise_and_get_velocity(t: int) -> None:
    scheduler = dummy_scheduler()
    gen = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(2, 5, 3, 4, 4, generator=gen, dtype=torch.float64)
    steps = torch.full((5,), t)
    x_t = scheduler.add_noise(x0, eps, steps)
    v = scheduler.get_velocity(x0, eps, steps)
    abar = float(scheduler.alphas_cumprod[t])
    torch.testing.assert_close(to_epsilon(v, x_t, abar, "v_prediction"), eps, rtol=0, atol=1e-5)
    # at t = 0, 1/sqrt(1 - ā_0) = 100 amplifies float64 rounding of x_t
    atol = 1e-3 if t == 0 else 1e-5
    torch.testing.assert_close(to_epsilon(x0, x_t, abar, "sample"), eps, rtol=0, atol=atol)
    assert to_epsilon(eps, x_t, abar, "epsilon") is eps


def test_learned_variance_channels_are_dropped() -> None:
    torch.manual_seed(1)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=(4, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    prior = PixelDiffusersPrior(unet, dummy_scheduler())
    x = _noisy(prior, 2)
    eps = prior.predict_noise(x, 10)
    assert eps.shape == (2, 3, 8, 8)
    torch.testing.assert_close(eps, unet(x, 10).sample[:, :3])


def test_unconditional_context(prior) -> None:
    assert prior.prepare_context(None, 5) == (1, None)
    assert prior.prepare_context([None, None, None], 5) == (3, None)
    with pytest.raises(PriorError, match="unconditional .* pass None"):
        prior.prepare_context([1, 2], 5)
    with pytest.raises(PriorError, match="num_particles must be a positive int, got 0"):
        prior.prepare_context(None, 0)
    with pytest.raises(PriorError, match="unconditional: pass context=None"):
        prior.predict_noise(_noisy(prior, 2), 3, torch.zeros(2, dtype=torch.long))


def test_class_labels_groups_times_particles(class_prior) -> None:
    G, labels = class_prior.prepare_context([2, 0, 1], num_particles=4)
    assert G == 3 and labels.shape == (12,) and labels.dtype == torch.long
    assert labels.cpu().tolist() == [2] * 4 + [0] * 4 + [1] * 4
    x = _noisy(class_prior, 12)
    batched = class_prior.predict_noise(x, 700, labels)
    # each row depends on its own label only: batched rows == rows evaluated alone
    for row in (0, 5, 11):
        alone = class_prior.predict_noise(x[row : row + 1], 700, labels[row : row + 1])
        torch.testing.assert_close(batched[row : row + 1], alone, rtol=1e-4, atol=1e-5)
    same_x = x[:1].expand(3, -1, -1, -1)
    per_class = class_prior.predict_noise(same_x, 700, labels[[0, 4, 8]])
    assert (per_class[0] - per_class[1]).abs().max() > 1e-4  # labels change the prediction


def test_class_conditional_errors(class_prior) -> None:
    with pytest.raises(PriorError, match=r"class-conditional \(3 classes\)"):
        class_prior.prepare_context(None, 2)
    with pytest.raises(PriorError, match=r"conditions\[1\] = 7 is not a class index in \[0, 3\)"):
        class_prior.prepare_context([0, 7], 2)
    with pytest.raises(PriorError, match=r"needs context of shape \(2,\)"):
        class_prior.predict_noise(_noisy(class_prior, 2), 5, None)


def test_bad_inputs_are_named(prior) -> None:
    with pytest.raises(PriorError, match=r"x has shape \(2, 3, 4, 4\); expected"):
        prior.predict_noise(torch.zeros(2, 3, 4, 4, device=prior.device), 5)
    with pytest.raises(PriorError, match=r"timestep t=1000 outside \[0, 1000\)"):
        prior.predict_noise(_noisy(prior, 1), 1000)


def test_loading_is_deterministic_and_seeded(folder, prior, device, dtype) -> None:
    again = PixelDiffusersPrior.from_pretrained(folder, device=device, dtype=dtype)
    x = _noisy(prior, 3)
    torch.testing.assert_close(again.predict_noise(x, 123), prior.predict_noise(x, 123), rtol=0, atol=0)
    same = dummy_pixel_unet(seed=0).state_dict()
    other = dummy_pixel_unet(seed=1).state_dict()
    key = "conv_in.weight"
    assert torch.equal(same[key], dummy_pixel_unet(seed=0).state_dict()[key])
    assert not torch.equal(same[key], other[key])


def test_save_load_round_trip(folder, prior, tmp_path) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and index["unet"] == ["diffusers", "UNet2DModel"]
    prior.save_pretrained(tmp_path / "copy")
    loaded = PixelDiffusersPrior.from_pretrained(tmp_path / "copy", device=prior.device, dtype=prior.dtype)
    for (name, a), b in zip(prior.unet.state_dict().items(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b), name
    torch.testing.assert_close(loaded.alphas_cumprod, prior.alphas_cumprod, rtol=0, atol=0)
    # the folder is a real diffusers pipeline folder too
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "copy")
    assert isinstance(pipe.unet, diffusers.UNet2DModel)


def test_scheduler_class_and_prediction_type_come_from_the_config(tmp_path, device) -> None:
    ddim = diffusers.DDIMScheduler(
        num_train_timesteps=500, beta_schedule="scaled_linear", prediction_type="v_prediction"
    )
    PixelDiffusersPrior(dummy_pixel_unet(), ddim).save_pretrained(tmp_path)
    prior = PixelDiffusersPrior.from_pretrained(tmp_path, device=device)
    assert isinstance(prior.scheduler, diffusers.DDIMScheduler)
    assert prior.prediction_type == "v_prediction" and prior.num_train_timesteps == 500
    torch.testing.assert_close(prior.alphas_cumprod.cpu().double(), ddim.alphas_cumprod.double())
    forced = PixelDiffusersPrior.from_pretrained(tmp_path, device=device, prediction_type="epsilon")
    assert forced.prediction_type == "epsilon"


def test_missing_folder_and_subfolders_are_named(tmp_path, folder) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PriorError, match=rf"{missing}.* does not exist.*unet/config.json"):
        PixelDiffusersPrior.from_pretrained(missing)
    only_scheduler = tmp_path / "half"
    (only_scheduler / "scheduler").mkdir(parents=True)
    config = (folder / "scheduler" / "scheduler_config.json").read_text()
    (only_scheduler / "scheduler" / "scheduler_config.json").write_text(config)
    with pytest.raises(PriorError, match=r"has no subfolder 'unet/'"):
        PixelDiffusersPrior.from_pretrained(only_scheduler)
    (only_scheduler / "unet").mkdir()
    with pytest.raises(PriorError, match=r"unet'.* holds none of \['config.json'\]"):
        PixelDiffusersPrior.from_pretrained(only_scheduler)
    with pytest.raises(PriorError, match="is a file"):
        PixelDiffusersPrior.from_pretrained(folder / "model_index.json")


def test_non_vp_schedule_and_bad_prediction_type_are_refused(tmp_path) -> None:
    with pytest.raises(PriorError, match="not a variance-preserving"):
        PixelDiffusersPrior(dummy_pixel_unet(), diffusers.ScoreSdeVeScheduler())
    with pytest.raises(PriorError, match=r"prediction_type 'flow' .* not supported"):
        PixelDiffusersPrior(dummy_pixel_unet(), dummy_scheduler(), prediction_type="flow")
    with pytest.raises(PriorError, match="must be a diffusers.UNet2DModel"):
        PixelDiffusersPrior(torch.nn.Linear(2, 2), dummy_scheduler())  # type: ignore[arg-type]


# ---------------------------------------------------------------- end to end with the DAS sampler
def _brightness(x: torch.Tensor) -> torch.Tensor:
    """Differentiable reward on `B x 3 x 8 x 8` images in [-1, 1]."""
    return -(x - 0.5).square().mean(dim=(1, 2, 3))


class _SignCount:
    """Black-box reward (no gradient): fraction of positive pixels."""

    differentiable = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() > 0).to(x.dtype).mean(dim=(1, 2, 3))


def _run(prior, reward, seed: int, **options):
    from optimizer.das import sample

    gen = torch.Generator(device=prior.device).manual_seed(seed)
    return sample(prior, reward, alpha=0.05, num_steps=5, generator=gen, **options)


def test_das_guided_end_to_end(prior) -> None:
    res = _run(prior, _brightness, seed=0, num_particles=4)
    assert res.samples.shape == (4, 3, 8, 8) and res.log_weights.shape == (4,)
    assert torch.isfinite(res.samples).all() and torch.isfinite(res.log_weights).all()
    total = res.log_weights.logsumexp(0).cpu()
    torch.testing.assert_close(total, torch.zeros((), dtype=total.dtype), rtol=0, atol=1e-5)
    torch.testing.assert_close(res.rewards, _brightness(res.samples).to(res.rewards.dtype))
    assert res.ess.shape == (5, 1) and float(res.lambdas[-1, 0]) == 1.0
    again = _run(prior, _brightness, seed=0, num_particles=4)
    torch.testing.assert_close(again.samples, res.samples, rtol=0, atol=0)
    other = _run(prior, _brightness, seed=1, num_particles=4)
    assert not torch.equal(other.samples, res.samples)


def test_das_gradient_free_groups_times_particles(class_prior) -> None:
    res = _run(class_prior, _SignCount(), seed=3, num_particles=3, conditions=[0, 2])
    assert res.samples.shape == (2, 3, 3, 8, 8) and res.log_weights.shape == (2, 3)
    assert torch.isfinite(res.log_weights).all()
    seen = _SignCount()(res.samples.flatten(0, 1)).reshape(2, 3).to(res.rewards.dtype)
    torch.testing.assert_close(res.rewards, seen)
    chunked = _run(class_prior, _SignCount(), seed=3, num_particles=3, conditions=[0, 2], chunk_size=2)
    torch.testing.assert_close(chunked.samples, res.samples, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("guidance", ["gradient", "tweedie", "none"])
def test_das_tilts_toward_the_reward(prior, guidance: str) -> None:
    """α → ∞ returns the prior (uniform weights, no resampling); a small α moves the weighted
    reward far above the prior's mean (by more than one prior standard deviation)."""
    from optimizer.das import sample

    def mean_pixel(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))

    def run(alpha: float):
        gen = torch.Generator(device=prior.device).manual_seed(11)
        return sample(
            prior, mean_pixel, num_particles=32, alpha=alpha, num_steps=8, guidance=guidance,
            generator=gen,
        )  # fmt: skip

    flat = run(1e9)
    torch.testing.assert_close(flat.weights, torch.full_like(flat.weights, 1 / 32))
    assert not bool(flat.resampled.any())
    prior_mean, prior_std = flat.rewards.mean(), flat.rewards.std()
    tilted = run(0.1)
    tilted_mean = (tilted.weights * tilted.rewards).sum()
    assert tilted_mean > prior_mean + prior_std, (float(tilted_mean), float(prior_mean), float(prior_std))


def test_broken_component_is_reported_with_its_folder(folder, tmp_path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    for weights in (broken / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    with pytest.raises(PriorError,
                       match=r"pixel prior from the local folder .*broken'.*diffusion_pytorch_model"):
        PixelDiffusersPrior.from_pretrained(broken)


def test_hub_ids_are_told_apart_from_local_paths(tmp_path) -> None:
    from optimizer.priors.diffusers_common import resolve_source

    required = {"unet": ("config.json",)}
    assert resolve_source("google/ddpm-cifar10-32", required, "unet/") == "google/ddpm-cifar10-32"
    for not_an_id in (str(tmp_path / "absent"), "./absent/model", "a/b/c", "just-a-name"):
        with pytest.raises(PriorError, match="does not exist: pass a local diffusers folder"):
            resolve_source(not_an_id, required, "unet/")
