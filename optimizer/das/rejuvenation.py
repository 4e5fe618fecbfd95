r"""Rejuvenation moves of DAS: MCMC on `x_{t_k}` that leaves the tilted target `π_k` invariant.

After resampling, several particles are copies of one parent. The DAS target at step `k` is
over paths, `π_k(x_{0:k}) ∝ p(x_{t_0}) Π_j p(x_{t_{j+1}} | x_{t_j}) exp(λ_k r_k(x_{t_k}) / α)`,
so the conditional of the last coordinate given its parent `x_{t_{k-1}}` is

    `π_k(x | parent) ∝ N(x; μ, σ² I) · exp(λ_k r_k(x) / α)`,

with `μ = μ(x_{t_{k-1}})`, `σ = σ_{k-1}` the prior (DDIM η=1) transition the particle was
drawn from and `r_k(x) = r(D(x̂0(x)))` the look-ahead. A Metropolis–Hastings kernel on this
conditional leaves `π_k` invariant (a Gibbs block update), so the particles' weights, their
lineage (``origin``) and every earlier coordinate stay as they are. ``μ`` is carried in the
particles (``DiffusionParticles.parent_mean``, permuted on resampling), `σ` is the schedule's.

Moves (``REJUVENATIONS``), each one prior evaluation (and reward) per particle and move:

* ``"mh"``, gradient-free. Proposal `x' = μ + sqrt(1 - β²)(x - μ) + β σ z`, `z ~ N(0, I)`:
  an autoregressive (preconditioned Crank–Nicolson) kernel reversible with respect to
  `N(μ, σ² I)`, so the Gaussian factors cancel and the acceptance probability is
  `min(1, exp(λ_k (r_k(x') - r_k(x)) / α))`. `β = 1` proposes a fresh child of the parent
  (independence sampler); smaller `β` makes local moves that are accepted more often.
* ``"mala"``, guided mode only (it reuses the reward gradient the guided sampler computes).
  With `h = τ σ²` (`τ` = ``step_size``) and `∇ log π(x) = (μ - x)/σ² + λ_k ∇r_k(x)/α`:
  `x' = x + (h/2) ∇ log π(x) + sqrt(h) z`, accepted with probability
  `min(1, π(x') q(x | x') / (π(x) q(x' | x)))`, `q(y | x) = N(y; x + (h/2)∇ log π(x), h I)`.

Why the acceptance must be exact: a move whose ratio is off (e.g. ``"mh"`` accepting with
`exp(r' - r)` without `λ_k / α`, or MALA without the `q` ratio) leaves some other
distribution invariant, and repeated after every resampling it drags the particles there;
the exactness tests (``tests/optimizer/das/test_das_rejuvenation.py``) see that bias.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optimizer.das.particles import DiffusionParticles
from optimizer.errors import ConfigError
from optimizer.smc.model import Rejuvenation
from optimizer.smc.sampler import log_potential

if TYPE_CHECKING:
    from optimizer.das.target import TiltedTarget

#: The rejuvenation moves by name ("none": no move).
REJUVENATIONS = ("none", "mh", "mala")


def check_rejuvenation(name: str, *, guided: bool) -> str:
    """``name`` if it is a known move usable in this mode, else ``ConfigError`` with a remedy."""
    if name not in REJUVENATIONS:
        raise ConfigError(f"rejuvenation={name!r} is not a known move; use one of: "
                          f"{', '.join(REJUVENATIONS)}")
    if name == "mala" and not guided:
        raise ConfigError("rejuvenation='mala' needs the reward's gradient, but this run is "
                          "gradient-free; use rejuvenation='mh' (or guidance='gradient' with a "
                          "differentiable reward)")
    return name


def rejuvenate(
    target: TiltedTarget, particles: DiffusionParticles, k: int, lam: Tensor, mask: Tensor,
    generator: torch.Generator | None, step_size: float | None = None,
) -> Rejuvenation[DiffusionParticles]:
    """One ``target.rejuvenation`` move of the step-`k` particles of the ``mask`` groups.

    Args:
        target: the ``TiltedTarget`` (its prior, reward, schedule, `α`, move name).
        particles: the particles at step `k` (`x_{t_k}`), carrying ``parent_mean``.
        k: the step index of the particles, in `[1, K)`.
        lam: `G`-dim Tensor `λ_k`.
        mask: `G`-dim bool Tensor; other groups come back unchanged.
        generator: the source of all randomness.
        step_size: `β` of ``"mh"`` or `τ` of ``"mala"`` (None: ``target.rejuvenation_step``).

    Returns:
        A ``Rejuvenation``: the particles with every evaluated field at the new positions,
        and the `G x P` acceptance indicators.
    """
    sigma = target.schedule.sigmas[k - 1]
    none = torch.zeros_like(particles.log_w, dtype=torch.bool)
    if target.rejuvenation == "none" or sigma == 0.0 or particles.parent_mean is None:
        return Rejuvenation(particles=particles, accepted=none)
    step = target.rejuvenation_step if step_size is None else step_size
    if target.rejuvenation == "mh":
        x_new, log_q_ratio = _crank_nicolson(particles, sigma, step, generator)
        ev = target.evaluate(x_new, k)
        log_accept = log_q_ratio
    else:
        x_new, fwd = _langevin(target, particles, lam, sigma, step, generator)
        ev = target.evaluate(x_new, k)
        log_accept = _mala_log_ratio(target, particles, x_new, ev.grad, lam, sigma, step, fwd)
    wd = particles.log_w.dtype
    r_old, r_new = particles.lookahead.to(wd), ev.reward.to(wd)
    log_accept = log_accept + log_potential(r_new, lam, target.alpha) - log_potential(
        r_old, lam, target.alpha)
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)  # a NaN reward is never accepted
    u = torch.rand(log_accept.shape, generator=generator, device=log_accept.device, dtype=wd)
    accepted = (torch.log(u) < log_accept) & mask[:, None] & torch.isfinite(r_new)

    def pick(new: Tensor | None, old: Tensor | None) -> Tensor | None:
        if new is None or old is None:
            return old
        a = accepted.reshape(*accepted.shape, *([1] * (new.dim() - 2)))
        return torch.where(a, new.to(old.dtype), old)

    moved = particles.replace(x=pick(x_new, particles.x), lookahead=pick(ev.reward,
                              particles.lookahead), x0_hat=pick(ev.x0_hat, particles.x0_hat),
                              eps=pick(ev.eps, particles.eps), grad=pick(ev.grad, particles.grad))
    return Rejuvenation(particles=moved, accepted=accepted)


def _crank_nicolson(
    particles: DiffusionParticles, sigma: float, beta: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """`x' = μ + sqrt(1-β²)(x - μ) + β σ z`; reversible for `N(μ, σ²I)`, so `log q`-ratio 0."""
    mu, x = particles.parent_mean, particles.x
    assert mu is not None
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_new = mu + math.sqrt(max(1.0 - beta**2, 0.0)) * (x - mu) + (beta * sigma) * z
    return x_new, torch.zeros_like(particles.log_w)


def _score(target: TiltedTarget, x: Tensor, mu: Tensor, grad: Tensor | None, lam: Tensor,
           sigma: float) -> Tensor:
    """`∇ log π(x | parent) = (μ - x)/σ² + λ ∇r(x)/α` (`G x P x ...`)."""
    score = (mu - x) / sigma**2
    if grad is None:  # a constant reward has no gradient
        return score
    lam_b = lam.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return score + lam_b * grad.to(x.dtype) / target.alpha


def _langevin(
    target: TiltedTarget, particles: DiffusionParticles, lam: Tensor, sigma: float, tau: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """MALA proposal with `h = τ σ²`; returns `x'` and `log q(x' | x)` (up to a constant)."""
    mu, x = particles.parent_mean, particles.x
    assert mu is not None
    h = tau * sigma**2
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_new = x + 0.5 * h * _score(target, x, mu, particles.grad, lam, sigma) + math.sqrt(h) * z
    wd = particles.log_w.dtype
    log_q_fwd = -0.5 * z.to(wd).square().sum(dim=tuple(range(2, z.dim())))
    return x_new, log_q_fwd


def _mala_log_ratio(
    target: TiltedTarget, particles: DiffusionParticles, x_new: Tensor, grad_new: Tensor | None,
    lam: Tensor, sigma: float, tau: float, log_q_fwd: Tensor,
) -> Tensor:
    """`log N(x'; μ, σ²) - log N(x; μ, σ²) + log q(x | x') - log q(x' | x)` (reward part apart)."""
    mu, x = particles.parent_mean, particles.x
    assert mu is not None
    wd = particles.log_w.dtype
    dims = tuple(range(2, x.dim()))
    h = tau * sigma**2
    back = x - x_new - 0.5 * h * _score(target, x_new, mu, grad_new, lam, sigma)
    log_q_back = -0.5 * back.to(wd).square().sum(dims) / h
    prior_new = -0.5 * (x_new - mu).to(wd).square().sum(dims) / sigma**2
    prior_old = -0.5 * (x - mu).to(wd).square().sum(dims) / sigma**2
    return prior_new - prior_old + log_q_back - log_q_fwd
