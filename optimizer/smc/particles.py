r"""One container for every per-particle quantity, permuted together at resampling.

The reference DAS implementation forgot to permute the guidance gradient and the previous
look-ahead value after resampling, which biases the weights. Here the particle state is a single
dataclass and ``particles[ancestors]`` gathers *every* dataclass field (including fields a
subclass adds), so a carried quantity that is not permuted cannot exist.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


def gather_particles(value: Tensor, ancestors: Tensor) -> Tensor:
    """Gather along the particle dim: `out[g, p, ...] = value[g, ancestors[g, p], ...]`.

    Args:
        value: `G x P x ...`-dim Tensor.
        ancestors: `G x P'`-dim long Tensor of particle indices within each group.

    Returns:
        `G x P' x ...`-dim Tensor.
    """
    idx = ancestors.reshape(*ancestors.shape, *([1] * (value.dim() - 2)))
    idx = idx.expand(*ancestors.shape, *value.shape[2:])
    return torch.gather(value, 1, idx)


@dataclass(frozen=True)
class Particles:
    """The state of `G` groups x `P` particles at one SMC step.

    Every field is a `G x P x ...`-dim Tensor or None (a quantity the current mode does not
    carry, e.g. the gradient in gradient-free mode). Subclasses may add fields; they are
    permuted automatically.

    Attributes:
        x: `G x P x *latent_shape` positions `x_t` in diffusion space.
        log_w: `G x P` log-weights accumulated since the last resampling of the group.
        lookahead: `G x P` look-ahead reward `r(decode(x̂0(x_t)))` (not divided by `α`).
        x0_hat: `G x P x *latent_shape` Tweedie estimate `x̂0(x_t)`.
        eps: `G x P x *latent_shape` predicted noise `ε̂(x_t)`.
        grad: `G x P x *latent_shape` `∇_{x_t} r(decode(x̂0(x_t)))`, or None (gradient-free).
        origin: `G x P` long index of the initial particle each particle descends from.

    >>> p = Particles(x=torch.arange(3.).view(1, 3, 1), log_w=torch.zeros(1, 3),
    ...               lookahead=torch.arange(3.).view(1, 3), x0_hat=None, eps=None, grad=None,
    ...               origin=torch.arange(3).view(1, 3))
    >>> p[torch.tensor([[2, 2, 0]])].lookahead
    tensor([[2., 2., 0.]])
    """

    x: Tensor
    log_w: Tensor
    lookahead: Tensor
    x0_hat: Tensor | None
    eps: Tensor | None
    grad: Tensor | None
    origin: Tensor

    def __getitem__(self, ancestors: Tensor) -> Particles:
        """Return the particles ``ancestors`` (`G x P'` long) selects, every field gathered."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                values[field.name] = None
            elif isinstance(value, Tensor):
                values[field.name] = gather_particles(value, ancestors)
            else:  # a non-tensor field would silently skip resampling: refuse it
                raise TypeError(
                    f"Particles field {field.name!r} holds {type(value).__name__}; every field "
                    "must be a `G x P x ...` Tensor or None so resampling can permute it"
                )
        return type(self)(**values)

    def replace(self, **changes: Tensor | None) -> Particles:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def num_groups(self) -> int:
        """`G`."""
        return self.x.shape[0]

    @property
    def num_particles(self) -> int:
        """`P`."""
        return self.x.shape[1]
