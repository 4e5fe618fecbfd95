"""``reward.constant_value``: the target and `log Ẑ` of a constant reward, without calling it."""
from __future__ import annotations

import math

import pytest
import torch

from optimizer.das import sample
from optimizer.errors import ConfigError


def _reward(value: float, *, flagged: bool, calls: list[int]):
    def constant(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return torch.full((x.shape[0],), value, dtype=x.dtype, device=x.device)

    if flagged:
        constant.constant_value = value  # type: ignore[attr-defined]
    return constant


@pytest.mark.parametrize("tempering", ["adaptive", "exponential"])
def test_flagged_constant_reward_gives_the_same_run_without_calls(gm, tempering) -> None:
    value, alpha = 0.75, 0.5
    runs, calls = [], []
    for flagged in (False, True):
        calls.clear()
        gen = torch.Generator(device=gm.device).manual_seed(3)
        runs.append(sample(gm, _reward(value, flagged=flagged, calls=calls), num_particles=64,
                           alpha=alpha, num_steps=8, tempering=tempering, guidance="none",
                           generator=gen))
        assert (calls == []) == flagged
    full, lazy = runs
    for name in ("samples", "log_weights", "rewards", "lambdas", "ess", "ancestors",
                 "log_normalizer"):
        assert torch.equal(getattr(lazy, name), getattr(full, name)), name
    # exp(c/α) is the normalizer of p exp(c/α): log Ẑ = c/α exactly up to rounding.
    assert torch.allclose(lazy.log_normalizer.double(),
                          torch.tensor(value / alpha, dtype=torch.float64),
                          atol=1e-5 * max(1.0, value / alpha))


@pytest.mark.parametrize("bad", [math.nan, math.inf, "zero", None.__class__, True])
def test_non_finite_constant_value_is_a_config_error(gm, bad) -> None:
    def reward(x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1)

    reward.constant_value = bad  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="constant_value"):
        sample(gm, reward, num_particles=4, alpha=1.0, num_steps=3)
