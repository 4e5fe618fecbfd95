r"""One container for every per-particle quantity, permuted together at resampling.

The reference DAS implementation forgot to permute the guidance gradient and the previous
look-ahead value after resampling, which biases the weights. Here the particle state is a single
dataclass and ``particles[ancestors]`` gathers *every* dataclass field (including the fields a
model's subclass adds), so a carried quantity that is not permuted cannot exist.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

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


_P = TypeVar("_P", bound="Particles")  # typing.Self needs Python 3.11


@dataclass(frozen=True)
class Particles:
    """The state of `G` groups x `P` particles at one SMC step: what the algorithm owns.

    A Feynman–Kac model subclasses it with the per-particle quantities it carries (positions,
    cached evaluations, gradients). Every field is a `G x P x ...`-dim Tensor or None (a
    quantity the current mode does not carry); all of them, the subclass's included, are
    permuted together by ``particles[ancestors]``.

    Attributes:
        log_w: `G x P` log-weights accumulated since the last resampling of the group.
        origin: `G x P` long index of the initial particle each particle descends from.

    >>> @dataclass(frozen=True)
    ... class Walkers(Particles):
    ...     x: Tensor
    >>> p = Walkers(log_w=torch.zeros(1, 3), origin=torch.arange(3).view(1, 3),
    ...             x=torch.arange(3.).view(1, 3, 1))
    >>> p[torch.tensor([[2, 2, 0]])].x.flatten()
    tensor([2., 2., 0.])
    """

    log_w: Tensor
    origin: Tensor

    def __getitem__(self: _P, ancestors: Tensor) -> _P:
        """Return the particles ``ancestors`` (`G x P'` long) selects, every field gathered."""
        values: dict[str, Any] = {}  # Tensor or None, per field of the concrete subclass
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

    def replace(self: _P, **changes: Tensor | None) -> _P:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        fields: dict[str, Any] = dict(changes)  # the concrete subclass's fields
        return dataclasses.replace(self, **fields)

    @property
    def num_groups(self) -> int:
        """`G`."""
        return self.log_w.shape[0]

    @property
    def num_particles(self) -> int:
        """`P`."""
        return self.log_w.shape[1]
