r"""The protocol every diffusion prior implements for the DAS sampler.

A prior is a discrete-time variance-preserving (VP) diffusion

    `x_t = sqrt(ā_t) x_0 + sqrt(1 - ā_t) ε,  ε ~ N(0, I),  t = 0 .. T_train - 1`

with cumulative signal `ā_t` (diffusers' ``alphas_cumprod``). The sampler only needs:

1. ``alphas_cumprod`` — the `(T_train,)` schedule, so it can pick any subsequence of
   timesteps (the number of sampling steps is independent of the training steps);
2. ``predict_noise(x, t, context)`` — the model's `ε̂(x_t, t)` for a batch of rows;
3. ``decode(x0)`` — differentiable map from diffusion space to design space (identity for
   vector and pixel priors, a VAE decoder for latent priors), on which rewards are defined;
4. ``prepare_context(conditions, num_particles)`` — per-row conditioning (e.g. prompt
   embeddings with classifier-free guidance), expanded to `G * P` rows, groups major.

Shape letters: `G` groups (prompts / contexts), `P` particles per group, `B = G * P` rows,
`*latent_shape` one particle in diffusion space, `*design_shape` one decoded design.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class DiffusionPrior(Protocol):
    """A pretrained VP diffusion model seen through the eyes of the sampler.

    Attributes:
        latent_shape: shape of one particle in diffusion space, e.g. ``(d,)`` or ``(C, H, W)``.
        alphas_cumprod: `(T_train,)`-dim float Tensor of `ā_t`, decreasing in `t`.
        device: where the model's parameters live; the sampler allocates particles there.
        dtype: the dtype particles are kept in.
    """

    latent_shape: tuple[int, ...]
    alphas_cumprod: Tensor
    device: torch.device
    dtype: torch.dtype

    @property
    def num_train_timesteps(self) -> int:
        """`T_train`, the length of ``alphas_cumprod``."""
        ...

    def predict_noise(self, x: Tensor, t: int, context: Tensor | None = None) -> Tensor:
        """Predict `ε̂(x_t, t)`.

        Args:
            x: `B x *latent_shape`-dim Tensor of noisy particles at training timestep ``t``.
            t: training timestep index in `[0, T_train)`.
            context: `B x ...`-dim Tensor of per-row conditioning from ``prepare_context``
                (already sliced to the same rows as ``x``), or None for an unconditional prior.

        Returns:
            `B x *latent_shape`-dim Tensor, differentiable with respect to ``x``.
        """
        ...

    def decode(self, x0: Tensor) -> Tensor:
        """Map `B x *latent_shape` clean particles to `B x *design_shape` designs (differentiable)."""
        ...

    def prepare_context(
        self, conditions: Sequence[Any] | None, num_particles: int
    ) -> tuple[int, Tensor | None]:
        """Build per-row conditioning for `G` conditions x `P` particles.

        Args:
            conditions: one entry per group (e.g. prompt strings), or None for one
                unconditional group.
            num_particles: `P`, particles per group.

        Returns:
            ``(G, context)`` where ``context`` is a `G*P x ...`-dim Tensor (row `g*P + p` belongs
            to group `g`) or None when the prior is unconditional. Rows of one group must be
            identical: the sampler resamples within groups and does not permute ``context``.
        """
        ...


def tweedie_x0(x_t: Tensor, eps: Tensor, alpha_bar_t: Tensor | float) -> Tensor:
    """Tweedie's estimate `x̂0(x_t) = (x_t - sqrt(1 - ā_t) ε̂) / sqrt(ā_t)`."""
    a = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - (1.0 - a).sqrt() * eps) / a.sqrt()
