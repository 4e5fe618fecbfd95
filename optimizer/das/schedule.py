r"""Sampling timesteps and the DDIM η=1 (ancestral) transition between them.

From timestep `t` to an earlier `s < t` (`ā` = ``alphas_cumprod``; `ā_s = 1` for the final
clean sample):

    `σ²_{t→s} = (1 - ā_s) / (1 - ā_t) · (1 - ā_t / ā_s)`,
    `μ(x_t) = sqrt(ā_s) x̂0 + sqrt(1 - ā_s - σ²) ε̂`,  `p(x_s | x_t) = N(μ(x_t), σ² I)`.

Map to the DAS paper: `x_t` ↔ ``x_t``, `x̂0` ↔ Tweedie's estimate, `σ_t` ↔ ``sigmas[k]``.
The last transition goes to `ā = 1`, where `σ = 0` and `x_0 = x̂0(x_{t_{K-1}})` (deterministic,
so it carries no proposal ratio and the exact reward `r(x_0)` enters the last weight).
The number of sampling steps `K` is independent of the prior's training steps.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from optimizer.errors import ConfigError


class ScheduleConfig(BaseModel):
    """How to pick `K` timesteps out of the prior's `T_train` (diffusers' ``timestep_spacing``).

    ``linspace``: `round(linspace(T_train - 1, 0, K))`; ``leading``: `(K-1-k)·(T_train // K)`;
    ``trailing``: `round(T_train - k T_train / K) - 1`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_steps: int = Field(100, ge=1)
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "linspace"


class DDIMSchedule:
    """Timesteps `t_0 > t_1 > ... > t_{K-1}` and the η=1 transition from `t_k` to `t_{k+1}`.

    Args:
        alphas_cumprod: `T_train`-dim Tensor of `ā_t` (the prior's).
        config: a ``ScheduleConfig``.

    Attributes (Python floats, computed once, so the step loop never reads the device):
        timesteps: `K` training indices, decreasing.
        alpha_bar: `ā_{t_k}`; alpha_bar_next: `ā_{t_{k+1}}` with `ā = 1` after the last step.
        sigmas: `σ_{t_k → t_{k+1}}` (0 for the last step).
        coef_x0, coef_eps: `sqrt(ā_s)` and `sqrt(1 - ā_s - σ²)` of the transition mean.

    >>> ac = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    >>> s = DDIMSchedule(ac, ScheduleConfig(num_steps=10))
    >>> s.timesteps[0], s.timesteps[-1], s.sigmas[-1]
    (999, 0, 0.0)
    """

    def __init__(self, alphas_cumprod: Tensor, config: ScheduleConfig) -> None:
        ac = alphas_cumprod.detach().to("cpu", torch.float64)
        T, K = ac.shape[0], config.num_steps
        if K > T:
            raise ConfigError(
                f"num_steps={K} exceeds the prior's {T} training timesteps; use num_steps <= {T}"
            )
        if config.timestep_spacing == "linspace":
            ts = torch.linspace(T - 1, 0, K, dtype=torch.float64).round().long().tolist()
        elif config.timestep_spacing == "leading":
            ts = [(K - 1 - k) * (T // K) for k in range(K)]
        else:
            ts = [int(round(T - k * T / K)) - 1 for k in range(K)]
        self.config = config
        self.timesteps: list[int] = ts
        self.alpha_bar: list[float] = [float(ac[t]) for t in ts]
        self.alpha_bar_next: list[float] = self.alpha_bar[1:] + [1.0]
        self.sigmas: list[float] = []
        self.coef_x0: list[float] = []
        self.coef_eps: list[float] = []
        for a_t, a_s in zip(self.alpha_bar, self.alpha_bar_next):
            var = (1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s)
            var = max(var, 0.0)
            self.sigmas.append(math.sqrt(var))
            self.coef_x0.append(math.sqrt(a_s))
            self.coef_eps.append(math.sqrt(max(1.0 - a_s - var, 0.0)))

    @property
    def num_steps(self) -> int:
        """`K`."""
        return len(self.timesteps)

    def transition_mean(self, k: int, x0_hat: Tensor, eps: Tensor) -> Tensor:
        """`μ = sqrt(ā_s) x̂0 + sqrt(1 - ā_s - σ²) ε̂` of step `k` (`t_k → t_{k+1}`)."""
        return self.coef_x0[k] * x0_hat + self.coef_eps[k] * eps


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float, event_dims: int) -> Tensor:
    """`log N(x; mean, std² I)` summed over the last ``event_dims`` dims (`std > 0`)."""
    dims = tuple(range(x.dim() - event_dims, x.dim()))
    n = math.prod(x.shape[x.dim() - event_dims :])
    sq = ((x - mean) ** 2).sum(dim=dims)
    return -0.5 * sq / std**2 - n * (math.log(std) + 0.5 * math.log(2 * math.pi))
