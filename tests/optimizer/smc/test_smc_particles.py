"""The particle container permutes every field together (the reference DAS bug cannot recur)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from optimizer.smc.particles import Particles


@dataclass(frozen=True)
class Carried(Particles):
    """A model's state: positions plus cached evaluations of several trailing shapes."""

    x: Tensor
    lookahead: Tensor
    x0_hat: Tensor | None
    eps: Tensor | None
    grad: Tensor | None


def _particles(G: int, P: int, device) -> Carried:
    ids = torch.arange(G * P, dtype=torch.float32, device=device).reshape(G, P)
    return Carried(
        x=ids[..., None, None].expand(G, P, 2, 3).clone(),
        log_w=-ids,
        lookahead=10 * ids,
        x0_hat=ids[..., None] + 0.5,
        eps=ids[..., None] - 0.5,
        grad=100 * ids[..., None].expand(G, P, 4).clone(),
        origin=torch.arange(P, device=device).expand(G, P).clone(),
    )


def test_every_field_follows_its_particle(device):
    G, P = 2, 5
    p = _particles(G, P, device)
    anc = torch.tensor([[4, 4, 0, 2, 1], [0, 0, 0, 3, 3]], device=device)
    q = p[anc]
    # Each particle's identity (its id in x) must match every other field's id.
    ident = q.x[:, :, 0, 0]
    expected = torch.gather(torch.arange(G * P, device=device).reshape(G, P).float(), 1, anc)
    torch.testing.assert_close(ident, expected)
    for field in dataclasses.fields(Carried):
        value = getattr(q, field.name)
        if field.name == "origin":
            torch.testing.assert_close(value, anc)
            continue
        original = getattr(p, field.name)
        for g in range(G):
            torch.testing.assert_close(value[g], original[g, anc[g]])


def test_a_new_field_added_by_a_subclass_is_permuted_automatically(device):
    @dataclass(frozen=True)
    class Tagged(Carried):
        tag: Tensor | None = None

    p = _particles(1, 4, device)
    t = Tagged(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)},
               tag=torch.tensor([[7, 8, 9, 10]], device=device))
    q = t[torch.tensor([[3, 3, 1, 0]], device=device)]
    assert isinstance(q, Tagged)
    assert q.tag.tolist() == [[10, 10, 8, 7]]
    assert q.lookahead.tolist() == [[30.0, 30.0, 10.0, 0.0]]


def test_none_fields_stay_none_and_non_tensor_fields_are_refused(device):
    p = _particles(1, 3, device).replace(grad=None)
    assert p[torch.tensor([[0, 0, 1]], device=device)].grad is None

    @dataclass(frozen=True)
    class Bad(Carried):
        note: object = None

    bad = Bad(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}, note=[1, 2, 3])
    with pytest.raises(TypeError, match="field 'note' holds list"):
        bad[torch.tensor([[0, 1, 2]], device=device)]
