"""LatentDiffusersPrior: text encoding, CFG in one UNet batch, VAE decode, loading, errors."""
from __future__ import annotations

import json
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers_dummies import CROSS_DIM, TOKEN_LENGTH, dummy_latent_components, dummy_scheduler

from optimizer.errors import PriorError
from optimizer.priors.base import DiffusionPrior, tweedie_x0
from optimizer.priors.diffusers_latent import LatentDiffusersPrior

PROMPTS = ["a red cat", "photo of a blue dog"]

@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("latent")
    parts = dummy_latent_components(tokenizer_dir=path / "_tokenizer_src")
    LatentDiffusersPrior(**parts, scheduler=dummy_scheduler()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def load(folder: Path, device: torch.device, dtype: torch.dtype):
    def _load(**options) -> LatentDiffusersPrior:
        return LatentDiffusersPrior.from_pretrained(folder, device=device, dtype=dtype, **options)

    return _load


@pytest.fixture(scope="module")
def prior(load) -> LatentDiffusersPrior:
    return load(guidance_scale=3.0)


def _latents(prior, rows: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, *prior.latent_shape, generator=gen).to(prior.device, prior.dtype)


def _unet(prior, z, t, emb) -> torch.Tensor:
    return prior.unet(z, torch.full((z.shape[0],), t, device=z.device), encoder_hidden_states=emb).sample


def test_conforms_to_protocol(prior, device) -> None:
    assert isinstance(prior, DiffusionPrior)
    assert prior.latent_shape == (4, 8, 8) and prior.vae_scale_factor == 2
    assert prior.num_train_timesteps == 1000 and prior.alphas_cumprod.device.type == device.type
    z = _latents(prior, 3).requires_grad_(True)
    images = prior.decode(z)
    assert images.shape == (3, 3, 16, 16)
    images.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in prior.vae.parameters())


def test_context_rows_are_groups_times_particles(prior) -> None:
    G, ctx = prior.prepare_context(PROMPTS, num_particles=3)
    assert G == 2 and ctx.shape == (6, 2, TOKEN_LENGTH, CROSS_DIM) and ctx.dtype == prior.dtype
    cond = prior.encode_prompts(PROMPTS)
    uncond = prior.encode_prompts([""])[0]
    for row in range(6):
        torch.testing.assert_close(ctx[row, 1], cond[row // 3])
        torch.testing.assert_close(ctx[row, 0], uncond)
    assert (cond[0] - cond[1]).abs().max() > 1e-3  # the prompts are really encoded
    G_none, ctx_none = prior.prepare_context(None, 2)
    assert G_none == 1 and ctx_none.shape == (2, 2, TOKEN_LENGTH, CROSS_DIM)


def test_guidance_formula_in_one_unet_batch(prior) -> None:
    G, ctx = prior.prepare_context(PROMPTS, num_particles=2)
    z = _latents(prior, 4)
    calls: list[int] = []
    hook = prior.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    try:
        eps = prior.predict_noise(z, 400, ctx)
    finally:
        hook.remove()
    assert calls == [8]  # uncond + cond rows of all groups x particles: one UNet call
    e_u = _unet(prior, z, 400, ctx[:, 0])
    e_c = _unet(prior, z, 400, ctx[:, 1])
    torch.testing.assert_close(eps, e_u + 3.0 * (e_c - e_u), rtol=1e-4, atol=1e-5)


def test_scale_one_is_the_conditional_model_alone(load, prior) -> None:
    plain = load(guidance_scale=1.0)
    G, ctx = plain.prepare_context(PROMPTS, num_particles=2)
    assert ctx.shape[1] == 1  # no unconditional rows are encoded or evaluated
    z = _latents(plain, 4)
    eps = plain.predict_noise(z, 250, ctx)
    torch.testing.assert_close(eps, _unet(plain, z, 250, ctx[:, 0]))
    _, guided_ctx = prior.prepare_context(PROMPTS, num_particles=2)
    guided = prior.predict_noise(z, 250, guided_ctx)
    assert (guided - eps).abs().max() > 1e-4  # the scale changes the prediction


def test_rows_do_not_interact(prior) -> None:
    _, ctx = prior.prepare_context(PROMPTS, num_particles=3)
    z = _latents(prior, 6, seed=3)
    batched = prior.predict_noise(z, 900, ctx)
    for row in (0, 4):
        alone = prior.predict_noise(z[row : row + 1], 900, ctx[row : row + 1])
        torch.testing.assert_close(batched[row : row + 1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_epsilon_conversion_after_guidance_matches_scheduler(load, kind: str) -> None:
    prior = load(guidance_scale=2.0, prediction_type=kind)
    _, ctx = prior.prepare_context(PROMPTS[:1], num_particles=2)
    z = _latents(prior, 2).double()
    t = 600
    out_u, out_c = (_unet(prior, z.to(prior.dtype), t, ctx[:, k]).double() for k in (0, 1))
    mixed = out_u + 2.0 * (out_c - out_u)
    x0_ref = dummy_scheduler(kind).step(mixed.cpu(), t, z.cpu()).pred_original_sample
    x0 = tweedie_x0(z, prior.predict_noise(z, t, ctx), prior.alphas_cumprod[t].double())
    torch.testing.assert_close(x0.cpu(), x0_ref, rtol=1e-4, atol=1e-4)


def test_decode_scales_latents_and_chunks(load, prior) -> None:
    z = _latents(prior, 5, seed=1)
    images = prior.decode(z)
    direct = prior.vae.decode(z / prior.vae.config.scaling_factor).sample
    torch.testing.assert_close(images, direct)
    chunked = load(decode_chunk_size=2)
    torch.testing.assert_close(chunked.decode(z), images, rtol=1e-4, atol=1e-5)


def test_loading_is_deterministic(load, prior) -> None:
    again = load(guidance_scale=3.0)
    _, ctx = prior.prepare_context(PROMPTS, 2)
    _, ctx2 = again.prepare_context(PROMPTS, 2)
    torch.testing.assert_close(ctx, ctx2, rtol=0, atol=0)
    z = _latents(prior, 4)
    expected = prior.predict_noise(z, 77, ctx)
    torch.testing.assert_close(again.predict_noise(z, 77, ctx2), expected, rtol=0, atol=0)


def test_save_load_round_trip_and_diffusers_interop(folder, prior, tmp_path) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    prior.save_pretrained(tmp_path / "copy")
    loaded = LatentDiffusersPrior.from_pretrained(tmp_path / "copy", device=prior.device, dtype=prior.dtype)
    for part in ("unet", "vae", "text_encoder"):
        a, b = getattr(prior, part).state_dict(), getattr(loaded, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert loaded.tokenizer("a red cat").input_ids == prior.tokenizer("a red cat").input_ids
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "copy", safety_checker=None)
    assert isinstance(pipe.unet, diffusers.UNet2DConditionModel)


def test_missing_component_is_named(folder, tmp_path) -> None:
    partial = tmp_path / "partial"
    for sub in ("text_encoder", "tokenizer", "unet", "scheduler"):  # no vae/
        (partial / sub).mkdir(parents=True)
        for f in (folder / sub).iterdir():
            (partial / sub / f.name).write_bytes(f.read_bytes())
    with pytest.raises(PriorError, match=r"partial'.* has no subfolder 'vae/'.*text_encoder/, tokenizer/"):
        LatentDiffusersPrior.from_pretrained(partial)
    with pytest.raises(PriorError, match=r"does not exist: pass a local diffusers folder"):
        LatentDiffusersPrior.from_pretrained(tmp_path / "none")


def test_bad_conditions_and_context_are_named(prior) -> None:
    with pytest.raises(PriorError, match=r"wrap a single prompt as \[prompt\]"):
        prior.prepare_context("a cat", 2)
    with pytest.raises(PriorError, match=r"conditions\[1\] = 3 is not a prompt string"):
        prior.prepare_context(["a cat", 3], 2)
    z = _latents(prior, 2)
    with pytest.raises(PriorError, match=r"context must be the \(2, 2, L, D\) rows"):
        prior.predict_noise(z, 10, None)
    _, ctx = prior.prepare_context(PROMPTS, 2)
    with pytest.raises(PriorError, match=r"got \(4, 2, 16, 32\)"):
        prior.predict_noise(z, 10, ctx)


def test_mismatched_components_are_refused(tmp_path) -> None:
    parts = dummy_latent_components(tokenizer_dir=tmp_path)
    with pytest.raises(PriorError, match="guidance_scale must be >= 0"):
        LatentDiffusersPrior(**parts, scheduler=dummy_scheduler(), guidance_scale=-1.0)
    parts["unet"].register_to_config(cross_attention_dim=64)
    with pytest.raises(PriorError, match="hidden_size 32 != unet cross_attention_dim 64"):
        LatentDiffusersPrior(**parts, scheduler=dummy_scheduler())


@pytest.mark.gpu
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_on_accelerator(folder, device, half) -> None:
    """fp16 keeps the VAE in float32 when its config asks (force_upcast); results stay close."""
    full = LatentDiffusersPrior.from_pretrained(folder, device=device, dtype=torch.float32)
    low = LatentDiffusersPrior.from_pretrained(folder, device=device, dtype=half)
    _, ctx = full.prepare_context(PROMPTS, 2)
    _, ctx_low = low.prepare_context(PROMPTS, 2)
    z = _latents(full, 4)
    eps, eps_low = full.predict_noise(z, 500, ctx), low.predict_noise(z.to(half), 500, ctx_low)
    assert eps_low.dtype == half
    torch.testing.assert_close(eps_low.float(), eps, rtol=0.05, atol=0.05)
    torch.testing.assert_close(low.decode(z.to(half)).float(), full.decode(z), rtol=0.05, atol=0.05)


# ---------------------------------------------------------------- end to end with the DAS sampler
def _redness(images: torch.Tensor) -> torch.Tensor:
    """Differentiable reward on `B x 3 x H x W` images: red minus blue."""
    return (images[:, 0] - images[:, 2]).mean(dim=(1, 2))


class _Quantized:
    """Black-box reward (no gradient): mean of images quantized to 8 bits on the host."""

    differentiable = False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.detach().float().cpu() + 1) * 127.5).clamp(0, 255).round().numpy()
        return torch.as_tensor(pixels.mean(axis=(1, 2, 3)) / 255.0, device=images.device)


def _run(prior, reward, seed: int, **options):
    from optimizer.das import sample

    gen = torch.Generator(device=prior.device).manual_seed(seed)
    return sample(prior, reward, alpha=0.05, num_steps=4, generator=gen, **options)


@pytest.mark.parametrize("guidance", ["gradient", "tweedie"])
def test_das_guided_prompts_times_particles(prior, guidance) -> None:
    res = _run(prior, _redness, seed=0, num_particles=3, conditions=PROMPTS, guidance=guidance)
    assert res.samples.shape == (2, 3, 3, 16, 16) and res.latents.shape == (2, 3, 4, 8, 8)
    assert torch.isfinite(res.samples).all() and torch.isfinite(res.log_weights).all()
    total = res.log_weights.logsumexp(-1).cpu()
    torch.testing.assert_close(total, torch.zeros(2, dtype=total.dtype), rtol=0, atol=1e-5)
    # the rewards the sampler weighted with are the rewards of the decoded images it returns
    seen = _redness(res.samples.flatten(0, 1)).reshape(2, 3).to(res.rewards.dtype)
    torch.testing.assert_close(res.rewards, seen, rtol=1e-4, atol=1e-5)
    # prompt rows are sliced with the particles: chunked evaluation gives the same run
    chunked = _run(prior, _redness, seed=0, num_particles=3, conditions=PROMPTS, chunk_size=2,
                   guidance=guidance)
    torch.testing.assert_close(chunked.samples, res.samples, rtol=1e-3, atol=1e-4)


def test_das_tweedie_direction_is_sqrt_alpha_bar_times_the_vae_reward_gradient(folder, device):
    """``guidance="tweedie"`` on the latent prior: `g̃ = sqrt(ā) ∇_{x̂0} r(VAE(x̂0))` (float64
    central differences through the real VAE decoder), with ε̂ and x̂0 as gradient-free."""
    from optimizer.das import build_sampler

    prior64 = LatentDiffusersPrior.from_pretrained(folder, device=device, dtype=torch.float64,
                                                   guidance_scale=3.0)

    def target(guidance):
        sampler, _ = build_sampler(prior64, _redness, num_particles=2, alpha=0.05, num_steps=4,
                                   conditions=PROMPTS, guidance=guidance)
        return sampler.target

    tw = target("tweedie")
    x = torch.randn(2, 2, *prior64.latent_shape, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64).to(device)
    k = 1
    ev, free = tw.evaluate(x, k), target("none").evaluate(x, k)
    torch.testing.assert_close(ev.x0_hat, free.x0_hat, rtol=0, atol=0)
    torch.testing.assert_close(ev.reward, free.reward, rtol=0, atol=0)
    v = torch.randn(ev.x0_hat.shape, generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64).to(device)
    h = 1e-5

    def r(z):
        return _redness(prior64.decode(z.flatten(0, 1))).reshape(2, 2)

    fd = (r(ev.x0_hat + h * v) - r(ev.x0_hat - h * v)) / (2 * h)
    a = tw.schedule.alpha_bar[k]
    torch.testing.assert_close((ev.grad * v).sum(dim=(2, 3, 4)), a**0.5 * fd,
                               rtol=1e-6, atol=1e-9)


def test_das_gradient_free_single_prompt(load) -> None:
    prior = load(guidance_scale=5.0, decode_chunk_size=2)
    res = _run(prior, _Quantized(), seed=1, num_particles=4, conditions=None)
    assert res.samples.shape == (4, 3, 16, 16) and res.log_weights.shape == (4,)
    assert torch.isfinite(res.log_weights).all() and res.ess.shape == (4, 1)
    torch.testing.assert_close(res.rewards, _Quantized()(res.samples).to(res.rewards.dtype))


def test_negative_prompt_and_image_size_options(load) -> None:
    custom = load(negative_prompt="blue dog", height=32, width=16)
    _, ctx = custom.prepare_context(["a cat"], 2)
    torch.testing.assert_close(ctx[:, 0], custom.encode_prompts(["blue dog"]).expand(2, -1, -1))
    assert custom.latent_shape == (4, 16, 8)
    z = _latents(custom, 2)
    assert custom.predict_noise(z, 300, ctx).shape == (2, 4, 16, 8)
    assert custom.decode(z).shape == (2, 3, 32, 16)
    with pytest.raises(PriorError, match="height=15 is not a positive multiple of the VAE scale factor 2"):
        load(height=15)
