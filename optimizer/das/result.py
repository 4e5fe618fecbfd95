"""What a DAS run returns: the whole weighted particle set and per-step diagnostics."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optimizer.das.config import DASConfig


@dataclass(frozen=True)
class DASResult:
    """The weighted particles approximating `p_pre(x) exp(r(x)/α) / Z` and how they got there.

    Shapes: with ``conditions`` given, per-particle fields have a leading `G` (groups) dim;
    without, the group dim is dropped (`P x ...`). Diagnostics are always `T x G` (`T` = `K`
    sampling steps; row `k` describes the move from `t_k` to `t_{k+1}`, the last row the move
    to `x_0`).

    Attributes:
        samples: `[G x] P x *design_shape` decoded designs `D(x_0)`.
        latents: `[G x] P x *latent_shape` particles `x_0` in diffusion space.
        log_weights: `[G x] P` normalized log-weights (``logsumexp`` over `P` is 0).
        rewards: `[G x] P` exact rewards `r(D(x_0))`.
        origin: `[G x] P` index of the initial particle each output descends from.
        ess: `T x G` ESS after reweighting at each step (before any resampling).
        lambdas: `T x G` tempering `λ_{k+1}` used at step `k` (last row is 1).
        resampled: `T x G` bool, whether the group was resampled after step `k`.
        lookahead_reward: `T x G` weighted mean look-ahead reward after step `k`.
        ancestors: `T x G x P` ancestor indices chosen after step `k` (identity if not resampled).
        log_normalizer: `G` estimate of `log E_{p_pre}[exp(r(x)/α)]`.
        accept_rate: `T x G` fraction of rejuvenation moves accepted after step `k` (0 where
            none ran), or None.
        timesteps: the `T` training timesteps visited.
        config: the options of the run.
    """

    samples: Tensor
    latents: Tensor
    log_weights: Tensor
    rewards: Tensor
    origin: Tensor
    ess: Tensor
    lambdas: Tensor
    resampled: Tensor
    lookahead_reward: Tensor
    ancestors: Tensor
    log_normalizer: Tensor
    timesteps: tuple[int, ...]
    config: DASConfig
    accept_rate: Tensor | None = None

    @property
    def weights(self) -> Tensor:
        """Normalized weights `exp(log_weights)`."""
        return self.log_weights.exp()

    def weighted_mean(self, values: Tensor | None = None) -> Tensor:
        """`Σ_p W_p v_p` over particles (default `v = samples`), per group if grouped."""
        v = self.samples if values is None else values
        w = self.weights.to(v.dtype)
        w = w.reshape(*w.shape, *([1] * (v.dim() - w.dim())))
        return (w * v).sum(dim=self.log_weights.dim() - 1)

    def best(self) -> Tensor:
        """Index of the particle of largest weight (per group), a common single pick."""
        return torch.argmax(self.log_weights, dim=-1)
