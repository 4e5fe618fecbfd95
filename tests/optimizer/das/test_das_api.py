"""The ``sample`` API: shapes, groups, seeding, dtype, chunking, checkpointing, clear errors."""
from __future__ import annotations

import pytest
import torch

from optimizer.das import DASResult, sample
from optimizer.errors import ConfigError, SamplerError
from optimizer.smc import RESAMPLERS

B_VEC = torch.tensor([1.0, 0.5])


def linear_reward(x):
    return x @ B_VEC.to(x)


def _run(gm, **kw):
    opts = dict(num_particles=16, alpha=1.0, num_steps=12, ess_threshold=0.9,
                generator=torch.Generator(device=gm.device).manual_seed(0))
    opts.update(kw)
    return sample(gm, linear_reward, **opts)


def assert_same(a: DASResult, b: DASResult, exact=True):
    for name in ["samples", "latents", "log_weights", "rewards", "ess", "lambdas",
                 "lookahead_reward", "log_normalizer"]:
        x, y = getattr(a, name), getattr(b, name)
        if exact:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9, msg=name)
    assert torch.equal(a.resampled, b.resampled) and torch.equal(a.ancestors, b.ancestors)


@pytest.mark.parametrize("guidance", ["gradient", "none"])
def test_shapes_and_diagnostics_one_group(gm, guidance):
    res = _run(gm, guidance=guidance)
    P, T = 16, 12
    assert res.samples.shape == (P, 2) and res.latents.shape == (P, 2)
    assert res.log_weights.shape == (P,) and res.rewards.shape == (P,)
    for name in ["ess", "lambdas", "resampled", "lookahead_reward"]:
        assert getattr(res, name).shape == (T, 1), name
    assert res.ancestors.shape == (T, 1, P) and res.log_normalizer.shape == (1,)
    torch.testing.assert_close(torch.logsumexp(res.log_weights, 0),
                               torch.zeros((), dtype=res.log_weights.dtype))
    torch.testing.assert_close(res.rewards, linear_reward(res.samples))
    lam = res.lambdas[:, 0]
    assert torch.all(lam[1:] >= lam[:-1]) and lam[-1] == 1 and lam[0] >= 0
    assert torch.all((res.ess >= 1 - 1e-4) & (res.ess <= P + 1e-3))
    assert not res.resampled[-1].any(), "the returned set is weighted, never resampled at the end"
    assert res.resampled.any(), "κ = 0.9 over 12 steps should resample at least once"
    # ancestors are the identity wherever no resampling happened
    ident = torch.arange(P, device=res.ancestors.device)
    for k in range(T):
        if not res.resampled[k, 0]:
            assert torch.equal(res.ancestors[k, 0], ident)
    # lineage: composing the per-step ancestors gives each output's initial particle
    lineage = ident.clone()
    for k in range(T):
        lineage = lineage[res.ancestors[k, 0]]
    assert torch.equal(lineage, res.origin)
    assert res.timesteps[0] == 999 and res.timesteps[-1] == 0 and len(res.timesteps) == T


def test_groups_give_leading_dim_and_are_independent(gm):
    res = _run(gm, conditions=["a", "b", "c"])
    assert res.samples.shape == (3, 16, 2) and res.log_weights.shape == (3, 16)
    assert res.ess.shape == (12, 3) and res.log_normalizer.shape == (3,)
    assert not torch.equal(res.samples[0], res.samples[1])
    torch.testing.assert_close(torch.logsumexp(res.log_weights, -1),
                               torch.zeros(3, device=res.log_weights.device))
    assert res.weighted_mean().shape == (3, 2) and res.best().shape == (3,)


def test_same_seed_same_result_other_seed_differs(gm):
    for guidance in ["gradient", "none"]:
        a = _run(gm, guidance=guidance)
        b = _run(gm, guidance=guidance)
        assert_same(a, b)
        c = _run(gm, guidance=guidance,
                 generator=torch.Generator(device=gm.device).manual_seed(1))
        assert not torch.equal(a.samples, c.samples)


@pytest.mark.parametrize("scheme", sorted(RESAMPLERS))
def test_every_scheme_runs(gm, scheme):
    res = _run(gm, resampling=scheme, conditions=[0, 1])
    assert torch.isfinite(res.log_weights).all() and res.resampled.any()


def test_guidance_auto_follows_the_differentiable_attribute(gm):
    calls = []

    def black_box(x):
        calls.append(x.requires_grad)
        return linear_reward(x)

    black_box.differentiable = False
    sample(gm, black_box, num_particles=4, alpha=1.0, num_steps=3)
    assert not any(calls), "a non-differentiable reward must never see a graph"
    calls.clear()
    black_box.differentiable = True
    sample(gm, black_box, num_particles=4, alpha=1.0, num_steps=3)
    assert any(calls)


def test_bad_options_raise_config_errors_naming_field(gm):
    with pytest.raises(ConfigError, match=r"alpha=0\.0: .*greater than 0.*positive float"):
        _run(gm, alpha=0.0)
    with pytest.raises(ConfigError, match=r"num_particles=0"):
        _run(gm, num_particles=0)
    with pytest.raises(ConfigError, match=r"ess_threshold=1\.5.*κ in \[0, 1\]"):
        _run(gm, ess_threshold=1.5)
    with pytest.raises(ConfigError, match=r"resampling='bootstrap'.*multinomial.*systematic"):
        _run(gm, resampling="bootstrap")
    with pytest.raises(ConfigError, match=r"tempering='cosine'.*adaptive, exponential"):
        _run(gm, tempering="cosine")
    with pytest.raises(ConfigError, match=r"guidance='dps'"):
        _run(gm, guidance="dps")
    with pytest.raises(ConfigError, match=r"conditions='a cat'.*single string"):
        _run(gm, conditions="a cat")
    with pytest.raises(ConfigError, match=r"num_steps=5000 exceeds"):
        _run(gm, num_steps=5000)


def test_reward_of_wrong_shape_is_named(gm):
    with pytest.raises(SamplerError, match=r"reward returned \(16, 2\) for a batch of 16"):
        sample(gm, lambda x: x, num_particles=16, alpha=1.0, num_steps=3)


def test_nan_reward_is_reported_after_the_loop(gm):
    def flaky(x):
        r = linear_reward(x)
        return torch.where(x[:, 0] > 2.5, torch.full_like(r, float("nan")), r)

    with pytest.raises(SamplerError, match=r"NaN or infinite values at step \d+ .*group 0"):
        sample(gm, flaky, num_particles=64, alpha=1.0, num_steps=10, guidance="none",
               generator=torch.Generator(device=gm.device).manual_seed(0))


@pytest.mark.gpu
def test_generator_on_another_device_type_is_named(gm):
    with pytest.raises(ConfigError, match=r"generator is on cpu but the prior runs on"):
        _run(gm, generator=torch.Generator().manual_seed(0))


def test_half_precision_particles_keep_float32_weights_and_rewards(gm):
    res = _run(gm, dtype=torch.bfloat16, guidance="none")
    assert res.latents.dtype == torch.bfloat16
    assert res.log_weights.dtype == torch.float32 and res.rewards.dtype == torch.float32
    assert torch.isfinite(res.log_weights).all()
