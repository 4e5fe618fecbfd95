"""DAS on the latent prior skips decoding `x̂0` and calling a reward flagged constant.

A counting decoder and a counting reward show the skipped work is gone (the decoder runs once,
on `x_0`, for the samples); the result is bit-identical to the same reward without the flag,
which takes the full path (decode and reward at every step), for the same seed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers_dummies import dummy_latent_components, dummy_scheduler
from torch import Tensor

from optimizer.das import sample
from optimizer.priors.diffusers_latent import LatentDiffusersPrior

STEPS, P = 6, 4


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory, device, dtype) -> LatentDiffusersPrior:
    path: Path = tmp_path_factory.mktemp("latent_lazy")
    parts = dummy_latent_components(tokenizer_dir=path / "_tokenizer_src")
    LatentDiffusersPrior(**parts, scheduler=dummy_scheduler()).save_pretrained(path)
    return LatentDiffusersPrior.from_pretrained(path, device=device, dtype=dtype)


class Counting:
    """Wraps the prior's ``decode`` and a zero reward, counting rows and calls."""

    def __init__(self, prior: LatentDiffusersPrior, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded: list[int] = []
        self.rewarded: list[int] = []
        decode = prior.decode

        def counting_decode(x0: Tensor) -> Tensor:
            self.decoded.append(x0.shape[0])
            return decode(x0)

        monkeypatch.setattr(prior, "decode", counting_decode)

    def reward(self, *, flagged: bool, value: float = 0.0):
        def zero(x: Tensor) -> Tensor:
            self.rewarded.append(x.shape[0])
            return torch.full((x.shape[0],), value, dtype=x.dtype, device=x.device)

        zero.differentiable = False  # type: ignore[attr-defined]
        if flagged:
            zero.constant_value = value  # type: ignore[attr-defined]
        return zero


def _run(prior, reward, guidance: str = "auto", **options):
    gen = torch.Generator(device=prior.device).manual_seed(7)
    return sample(prior, reward, num_particles=P, alpha=0.5, num_steps=STEPS,
                  conditions=["a cat", "a dog"], guidance=guidance, generator=gen, **options)


def _same(a, b) -> None:
    for name in ("samples", "latents", "log_weights", "rewards", "origin", "ess", "lambdas",
                 "resampled", "lookahead_reward", "ancestors", "log_normalizer"):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x, y), name


@pytest.mark.parametrize("value", [0.0, -1.25])
def test_constant_reward_skips_decoding_and_reward_calls(prior, monkeypatch, value) -> None:
    count = Counting(prior, monkeypatch)
    full = _run(prior, count.reward(flagged=False, value=value))
    # The full path decodes and rewards every row at t_0, at every intermediate step and at x_0.
    assert count.decoded == [2 * P] * (STEPS + 1) and count.rewarded == [2 * P] * (STEPS + 1)
    count.decoded.clear(), count.rewarded.clear()

    lazy = _run(prior, count.reward(flagged=True, value=value))
    assert count.decoded == [2 * P]  # once, the final x_0, for the samples
    assert count.rewarded == []
    _same(lazy, full)
    assert torch.all(lazy.rewards == value)


def test_chunked_lazy_run_decodes_only_x0_in_chunks(prior, monkeypatch) -> None:
    count = Counting(prior, monkeypatch)
    full = _run(prior, count.reward(flagged=False), chunk_size=3)
    count.decoded.clear(), count.rewarded.clear()
    lazy = _run(prior, count.reward(flagged=True), chunk_size=3)
    assert count.decoded == [3, 3, 2] and count.rewarded == []
    _same(lazy, full)


@pytest.mark.parametrize("guidance", ["gradient", "tweedie"])
def test_constant_reward_needs_no_backward_pass_when_guided(prior, monkeypatch, guidance) -> None:
    """guidance="gradient" or "tweedie" with a flagged constant: no decode of x̂0, no autograd,
    and the prior's moves (the gradient of a constant is 0, so the guided proposal is the
    prior's)."""
    count = Counting(prior, monkeypatch)
    free = _run(prior, count.reward(flagged=True, value=2.0), guidance="none")
    count.decoded.clear()
    guided = _run(prior, count.reward(flagged=True, value=2.0), guidance=guidance)
    assert count.decoded == [2 * P] and count.rewarded == []
    _same(guided, free)
