r"""The particle state of DAS: what a diffusion particle carries from one step to the next."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from optimizer.smc.particles import Particles


@dataclass(frozen=True)
class DiffusionParticles(Particles):
    """`G x P` diffusion particles at timestep `t_k` (or `x_0` after the last move).

    Besides the algorithm's ``log_w`` and ``origin``, every quantity evaluated at `x_t` that
    the next step reuses is a field, so resampling permutes it with the particle.

    Attributes:
        x: `G x P x *latent_shape` positions `x_t` in diffusion space.
        lookahead: `G x P` look-ahead reward `r(D(x̂0(x_t)))` (not divided by `α`); after the
            last move, the exact reward `r(D(x_0))`.
        x0_hat: `G x P x *latent_shape` Tweedie estimate `x̂0(x_t)` (`x_0` itself at the end).
        eps: `G x P x *latent_shape` predicted noise `ε̂(x_t)`, or None at the end.
        grad: `G x P x *latent_shape` `∇_{x_t} r(D(x̂0(x_t)))`, or None (gradient-free mode,
            and at the end).
        design: `G x P x *design_shape` decoded designs `D(x_0)` after the last move, None
            before (intermediate look-ahead designs are not kept).
        parent_mean: `G x P x *latent_shape` mean `μ(x_{t_{k-1}})` of the prior transition
            `x_{t_k}` was drawn from (rejuvenation proposes from it), or None when not
            rejuvenating. A field, so resampling permutes it with the particle.

    >>> p = DiffusionParticles(log_w=torch.zeros(1, 3), origin=torch.arange(3).view(1, 3),
    ...                        x=torch.arange(3.).view(1, 3, 1), lookahead=torch.arange(3.)
    ...                        .view(1, 3), x0_hat=None, eps=None, grad=None, design=None)
    >>> p[torch.tensor([[2, 2, 0]])].lookahead
    tensor([[2., 2., 0.]])
    """

    x: Tensor
    lookahead: Tensor
    x0_hat: Tensor | None
    eps: Tensor | None
    grad: Tensor | None
    design: Tensor | None
    parent_mean: Tensor | None = None
