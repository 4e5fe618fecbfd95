r"""The Feynman–Kac model a tempered SMC sampler runs on, apart from the algorithm.

A reward-tilted Feynman–Kac model over `K` steps (Chopin & Papaspiliopoulos 2020, ch. 5):
a Markov chain `M_0(x_0) Π_k M_{k+1}(x_{k+1} | x_k)` (the *prior* path), a proposal
`Q_{k+1}(x_{k+1} | x_k)` that moves the particles, and a per-particle reward `r_k(x_k)`; the
intermediate targets are

    `π_k(x_{0:k}) ∝ M_0(x_0) Π_{j<k} M_{j+1}(x_{j+1} | x_j) · exp(λ_k r_k(x_k) / α)`,

with `λ_0 = 0 <= λ_1 <= ... <= λ_K = 1` chosen by a tempering schedule. The incremental
log-weight of a move `x_k → x_{k+1} ~ Q_{k+1}` is

    `log M_{k+1}(x_{k+1}|x_k) - log Q_{k+1}(x_{k+1}|x_k) + λ_{k+1} r_{k+1}(x_{k+1})/α - λ_k r_k(x_k)/α`.

The model provides the pieces that know what a particle is (the initial draw, the move with its
log-ratio `log M - log Q`, the reward of each particle); the algorithm
(``optimizer.smc.sampler.TemperedSMC``) owns the weights, the lineage, `λ`, resampling and the
diagnostics. Map to DAS (``optimizer.das.target.TiltedTarget``): `x_k` ↔ the diffusion latent
`x_{t_k}`, `M` ↔ the DDIM η=1 transition, `Q` ↔ the guided proposal, `r_k` ↔ the look-ahead
reward `r(D(x̂0(x_{t_k})))` (the exact `r(D(x_0))` after the last move).

A model may also offer *rejuvenation* (``RejuvenatingModel``): an MCMC move of the last
coordinate `x_k` that leaves `π_k` invariant, which the algorithm applies after resampling
(resample-move, Gilks & Berzuini 2001) to spread the copies of one parent apart without
changing the target. Its conditional given the path so far is

    `π_k(x_k | x_{0:k-1}) ∝ M_k(x_k | x_{k-1}) exp(λ_k r_k(x_k) / α)`,

so a Metropolis–Hastings move on it needs only the parent's transition `M_k(· | x_{k-1})`,
the reward and `λ_k`: what the move is (and what it costs) is the model's business.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from optimizer.smc.particles import Particles

ParticlesT = TypeVar("ParticlesT", bound=Particles)


@dataclass(frozen=True)
class Move(Generic[ParticlesT]):
    """What one move of the model returns.

    Attributes:
        particles: the moved particles: every model field at `x_{k+1}` (its reward included),
            ``log_w`` and ``origin`` unchanged (the algorithm updates them).
        log_ratio: `G x P`-dim Tensor `log M_{k+1}(x_{k+1}|x_k) - log Q_{k+1}(x_{k+1}|x_k)`
            (zeros when the move draws from the prior path itself).
    """

    particles: ParticlesT
    log_ratio: Tensor


@dataclass(frozen=True)
class Rejuvenation(Generic[ParticlesT]):
    """What one rejuvenation move of the model returns.

    Attributes:
        particles: the particles after the move (``log_w`` and ``origin`` unchanged: a
            `π_k`-invariant move keeps the weights and the lineage).
        accepted: `G x P` bool Tensor, whether each particle moved.
    """

    particles: ParticlesT
    accepted: Tensor


@runtime_checkable
class FeynmanKacModel(Protocol[ParticlesT]):
    """The model of a tempered SMC run: initial draw, move, per-particle reward.

    Attributes:
        num_groups: `G` independent groups (each resampled on its own).
        num_particles: `P` particles per group.
        num_steps: `K` moves.
        alpha: `α > 0`, the tilt's temperature (`π ∝ M exp(r / α)` at `λ = 1`).
        device: where the particles live.
        weight_dtype: dtype of log-weights, `λ` and `log Ẑ` (at least float32).

    >>> sampler = TemperedSMC(model, tempering=AdaptiveTempering(), resampler=systematic,
    ...                       ess_threshold=0.5, generator=torch.Generator().manual_seed(0))
    >>> result = sampler.run()
    """

    num_groups: int
    num_particles: int
    num_steps: int
    alpha: float
    device: torch.device
    weight_dtype: torch.dtype

    def initial(
        self, generator: torch.Generator | None, *, log_w: Tensor, origin: Tensor
    ) -> ParticlesT:
        """Draw `x_0 ~ M_0` (`G x P` particles) and evaluate what the particles carry.

        Args:
            generator: the source of all randomness.
            log_w: `G x P` initial log-weights (zeros), to store in the container.
            origin: `G x P` long lineage `origin[g, p] = p`, to store in the container.

        Returns:
            The model's ``Particles`` subclass holding ``log_w``, ``origin`` and its fields.
        """
        ...

    def move(
        self, particles: ParticlesT, k: int, lam_next: Tensor, generator: torch.Generator | None
    ) -> Move[ParticlesT]:
        """Move every particle from step `k` to `k + 1` with `Q_{k+1}`.

        Args:
            particles: the particles at step `k` (already resampled).
            k: the step index in `[0, K)`; `k = K - 1` is the last move.
            lam_next: `G`-dim Tensor `λ_{k+1}` (a guided proposal may use it).
            generator: the source of all randomness.

        Returns:
            A ``Move``: the moved particles and `log M - log Q` (`G x P`).
        """
        ...

    def reward(self, particles: ParticlesT) -> Tensor:
        """`G x P`-dim Tensor `r_k(x_k)` of the particles (not divided by `α`)."""
        ...


@runtime_checkable
class RejuvenatingModel(Protocol[ParticlesT]):
    """A ``FeynmanKacModel`` that also offers a `π_k`-invariant MCMC move of `x_k`.

    >>> sampler = TemperedSMC(model, ..., rejuvenation_steps=2)  # 2 moves after each resampling
    """

    def rejuvenate(
        self, particles: ParticlesT, k: int, lam: Tensor, mask: Tensor,
        generator: torch.Generator | None,
    ) -> Rejuvenation[ParticlesT]:
        """One MCMC move of the step-`k` particles leaving `π_k(x_k | x_{0:k-1})` invariant.

        Args:
            particles: the particles at step `k` in `[1, K)` (just resampled).
            k: the step index of the particles.
            lam: `G`-dim Tensor `λ_k` of the target the move must leave invariant.
            mask: `G`-dim bool Tensor; groups outside it must come back unchanged.
            generator: the source of all randomness.

        Returns:
            A ``Rejuvenation``: the particles (every model field at the new `x_k`) and which
            of them moved.
        """
        ...
