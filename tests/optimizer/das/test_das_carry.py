"""Every carried per-particle quantity follows its particle through resampling.

The reference DAS implementation does not permute the guidance gradient and the previous
look-ahead value after resampling. These tests run the real sampler step by step and check
that the carried state always equals what recomputing it at the particles' positions gives;
a container with the reference bug is shown to fail the same check.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from das_cases import ReferenceBugParticles, three_mode_prior
from torch import Tensor

from optimizer.das import build_sampler
from optimizer.das.algorithm import DASSampler
from optimizer.das.particles import DiffusionParticles
from optimizer.smc.particles import gather_particles


def _reward(x: Tensor) -> Tensor:
    return x @ torch.tensor([1.0, 0.5], dtype=x.dtype, device=x.device)


def _inconsistency(sampler: DASSampler, particles: DiffusionParticles, k: int) -> dict[str, float]:
    """Max deviation of each carried field from its value recomputed at the positions."""
    ev = sampler.target.evaluate(particles.x, k)
    return {
        "eps": (particles.eps - ev.eps).abs().max().item(),
        "x0_hat": (particles.x0_hat - ev.x0_hat).abs().max().item(),
        "lookahead": (particles.lookahead - ev.reward).abs().max().item(),
        "grad": (particles.grad - ev.grad).abs().max().item(),
    }


def _walk(gm, particles_cls=DiffusionParticles, steps=12):
    sampler, _ = build_sampler(gm, _reward, num_particles=32, alpha=0.5, num_steps=steps,
                               conditions=[0, 1], guidance="gradient", ess_threshold=1.0,
                               tempering="polynomial",
                               generator=torch.Generator(device=gm.device).manual_seed(0))
    sampler.target.particles_cls = particles_cls
    state = sampler.init()
    ancestors = []
    worst: dict[str, float] = {}
    for k in range(steps - 1):  # the last step leaves t-space; nothing is carried after it
        out = sampler.step(state)
        state = out.state
        ancestors.append(out.record.ancestors)
        for name, dev in _inconsistency(sampler, state.particles, k + 1).items():
            worst[name] = max(worst.get(name, 0.0), dev)
    ident = torch.arange(32, device=gm.device)
    permuted = sum(int((a != ident).any()) for a in torch.stack(ancestors)
                   .flatten(0, 1))
    return worst, permuted


def test_carried_state_matches_positions_after_every_resampling(device):
    gm = three_mode_prior(device, torch.float64)
    worst, permuted = _walk(gm)
    assert permuted >= 5, "the check needs real permutations to mean anything"
    assert all(v < 1e-10 for v in worst.values()), worst


def test_the_check_catches_the_reference_bug(device):
    gm = three_mode_prior(device, torch.float64)
    worst, permuted = _walk(gm, ReferenceBugParticles)
    assert permuted >= 5
    assert worst["lookahead"] > 1e-3 and worst["grad"] > 1e-3, worst


def test_gather_particles_handles_any_trailing_shape(device):
    v = torch.arange(2 * 3 * 4 * 5, device=device).reshape(2, 3, 4, 5)
    anc = torch.tensor([[2, 0, 0], [1, 1, 2]], device=device)
    out = gather_particles(v, anc)
    for g in range(2):
        for p in range(3):
            assert torch.equal(out[g, p], v[g, anc[g, p]])


def test_fields_added_to_the_sampler_state_follow_resampling(device):
    """A subclass field set at init is carried through real SMC steps and permuted with x."""
    @dataclass(frozen=True)
    class WithBirthPosition(DiffusionParticles):
        birth: Tensor | None = None

    gm = three_mode_prior(device, torch.float64)
    sampler, _ = build_sampler(gm, _reward, num_particles=16, alpha=0.5, num_steps=8,
                               guidance="none", ess_threshold=1.0, tempering="polynomial",
                               generator=torch.Generator(device=device).manual_seed(1))
    state = sampler.init()
    particles = state.particles
    fields = {f.name: getattr(particles, f.name) for f in dataclasses.fields(DiffusionParticles)}
    state = dataclasses.replace(state, particles=WithBirthPosition(**fields,
                                                                   birth=particles.x.clone()))
    start = particles.x.clone()
    for _ in range(7):
        state = sampler.step(state).state
    particles = state.particles
    assert isinstance(particles, WithBirthPosition)
    # birth must be the initial position of the particle's origin
    torch.testing.assert_close(particles.birth, gather_particles(start, particles.origin))
    assert not torch.equal(particles.origin, torch.arange(16, device=device).expand(1, 16))


@pytest.mark.parametrize("guidance", ["gradient", "none"])
def test_origin_lineage_is_consistent(device, guidance):
    from optimizer.das import sample

    gm = three_mode_prior(device)
    res = sample(gm, _reward, num_particles=32, alpha=0.5, num_steps=20, ess_threshold=0.9,
                 guidance=guidance, generator=torch.Generator(device=device).manual_seed(2))
    lineage = torch.arange(32, device=device)
    for k in range(res.ancestors.shape[0]):
        lineage = lineage[res.ancestors[k, 0]]
    assert torch.equal(lineage, res.origin)
