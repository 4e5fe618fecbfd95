r"""The reward-tilted Feynman–Kac model of DAS (the target, apart from the SMC algorithm).

Intermediate targets over the sampling timesteps `t_0 > ... > t_{K-1}` (then `x_0`):

    `π_k(x) ∝ p(x_{t_k}) exp(λ_k r(D(x̂0(x_{t_k}))) / α)`,   `D` = ``prior.decode``.

Pieces (paper: Kim, Kim & Park, ICLR 2025, "Test-time Alignment of Diffusion Models without
Reward Over-optimization"):

1. initial draw `x_{t_0} ~ N(0, I)` (`λ_0 = 0`, so the initial weights are uniform);
2. proposal `q(x_s | x_t) = N(μ(x_t) + σ² λ_{k+1} ∇_{x_t} r(D(x̂0(x_t))) / α, σ² I)` when guided
   (``tweedie``: with Tweedie's `∂x̂0/∂x_t` for the denoiser's, ``optimizer.das.guidance``),
   the prior transition `p(x_s | x_t) = N(μ(x_t), σ² I)` when gradient-free;
3. log-potential `λ r / α`, so the incremental log-weight is
   `log p(x_s|x_t) - log q(x_s|x_t) + λ_{k+1} r(x̂0(x_s))/α - λ_k r(x̂0(x_t))/α`;
4. the last transition is deterministic (`σ = 0`, `x_0 = x̂0`), and the exact reward
   `r(D(x_0))` with `λ_K = 1` gives the final weight.

``TiltedTarget`` is a ``optimizer.smc.FeynmanKacModel`` over ``DiffusionParticles``
(``initial`` / ``move`` / ``reward``); the SMC algorithm that runs it is generic
(``optimizer.smc.TemperedSMC``). The diffusion pieces are also callable one by one
(``evaluate``, ``propose``, ``final``), each returning a small frozen dataclass.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from optimizer.das.guidance import tweedie_lookahead
from optimizer.das.particles import DiffusionParticles
from optimizer.das.rejuvenation import check_rejuvenation, rejuvenate
from optimizer.das.schedule import DDIMSchedule
from optimizer.errors import ConfigError, SamplerError
from optimizer.smc.model import Move, Rejuvenation

Reward = Callable[[Tensor], Tensor]


def _finite(value: object) -> float:
    """``reward.constant_value`` as a float, or ``ConfigError`` if it is not a finite number."""
    try:
        c = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        c = math.nan
    if isinstance(value, bool) or not math.isfinite(c):
        raise ConfigError(f"reward.constant_value={value!r} must be a finite number (or unset "
                          "for a non-constant reward)")
    return c


@dataclass(frozen=True)
class Evaluation:
    """The prior and the reward evaluated at `G x P` positions `x_t` of step `k`.

    Attributes:
        eps: `G x P x *latent_shape` predicted noise `ε̂(x_t)` (consistent with a clipped `x̂0`).
        x0_hat: `G x P x *latent_shape` Tweedie estimate `x̂0(x_t)`.
        reward: `G x P` look-ahead reward `r(D(x̂0(x_t)))`.
        grad: `G x P x *latent_shape` `∇_{x_t} r(D(x̂0(x_t)))` (``tweedie``: its denoiser-free
            stand-in `sqrt(ā) ∇_{x̂0} r`), or None (gradient-free).
    """

    eps: Tensor
    x0_hat: Tensor
    reward: Tensor
    grad: Tensor | None


@dataclass(frozen=True)
class Proposal:
    """A draw `x_s ~ q(· | x_t)` and its log-ratio.

    Attributes:
        x: `G x P x *latent_shape` new positions `x_s`.
        log_ratio: `G x P` `log p(x_s|x_t) - log q(x_s|x_t)` (zeros for prior moves).
        mean: `G x P x *latent_shape` prior transition mean `μ(x_t)` (rejuvenation reuses it).
    """

    x: Tensor
    log_ratio: Tensor
    mean: Tensor | None = None


@dataclass(frozen=True)
class FinalEvaluation:
    """The exact reward of clean particles `x_0`.

    Attributes:
        reward: `G x P` exact `r(D(x_0))`.
        design: `G x P x *design_shape` decoded designs `D(x_0)`.
    """

    reward: Tensor
    design: Tensor


class TiltedTarget:
    """`p_pre(x) exp(r(x)/α)` seen through a diffusion prior, for `G` groups x `P` particles.

    A ``FeynmanKacModel[DiffusionParticles]`` (``optimizer.smc.model``).

    Args:
        prior: a ``DiffusionPrior``.
        reward: `r(x)`: `B x *design_shape` → `B`, on decoded designs.
        alpha: `α > 0`, the KL-regularization strength.
        schedule: the ``DDIMSchedule`` of the run.
        num_groups, num_particles: `G`, `P`.
        context: `G*P x ...` conditioning from ``prior.prepare_context`` (or None); it must be
            the same for every particle of a group, since resampling permutes within groups.
        guided: use the gradient proposal (the reward must be differentiable).
        tweedie: with ``guided``, shift by the denoiser-Jacobian-free `sqrt(ā) ∇_{x̂0} r`
            (``optimizer.das.guidance``: back-propagates through the decoder and the reward
            only) instead of the exact `∇_{x_t} r(D(x̂0(x_t)))`.
        chunk_size: rows per prior/reward call (None: all `G*P` at once).
        gradient_checkpointing: recompute the prior and decoder in the backward pass, so
            the peak memory is one segment's activations instead of all of them.
        dtype: dtype of the particles (the prior runs in ``prior.dtype``).
        clip_sample: clamp `x̂0` to `[-c, c]` and re-derive `ε̂ = (x_t - sqrt(ā) x̂0) /
            sqrt(1 - ā)` from it (diffusers' ``clip_sample``; the η=1 move is then the DDPM
            posterior `q(x_s | x_t, x̂0)`), or None. Needed for priors with a vanishing
            `ā_{t_0}` (``squaredcos_cap_v2``: `ā_{T-1} ≈ 1e-9`), where Tweedie's `x̂0` multiplies
            the network's error by `1/sqrt(ā)` and samples explode. The weights stay exact for
            the clipped sampler's own path measure (the same kernel enters `p` and `q`).
        constant_reward: the value `c` of a reward known to be constant (``reward.constant_value``,
            e.g. 0 for the plain prior), or None. Then `r(D(x̂0))` is `c` everywhere and its
            gradient is 0, so ``evaluate`` neither decodes `x̂0` nor calls the reward nor
            back-propagates, and ``final`` decodes `x_0` for the designs without calling the
            reward: the weights and `log Ẑ` are those the reward would give, without the work.
        rejuvenation: the `π_k`-invariant MCMC move ``rejuvenate`` makes after resampling
            (``optimizer.das.rejuvenation.REJUVENATIONS``): ``"none"``, ``"mh"`` or ``"mala"``.
        rejuvenation_step: the move's step in (0, 1]: `β` of ``"mh"`` (1: a fresh child of the
            parent), `τ = h / σ²` of ``"mala"``.
    """

    #: The particle container; a subclass may add fields (they are carried and permuted too).
    particles_cls: type[DiffusionParticles] = DiffusionParticles

    def __init__(
        self,
        prior: Any,
        reward: Reward,
        *,
        alpha: float,
        schedule: DDIMSchedule,
        num_groups: int,
        num_particles: int,
        context: Tensor | None,
        guided: bool,
        chunk_size: int | None = None,
        gradient_checkpointing: bool = False,
        dtype: torch.dtype | None = None,
        clip_sample: float | None = None,
        constant_reward: float | None = None,
        rejuvenation: str = "none",
        rejuvenation_step: float = 0.5,
        tweedie: bool = False,
    ) -> None:
        # A constant reward has a zero gradient: MALA needs no reward gradient then (the plain
        # prior of a campaign's first round runs gradient-free whatever the configured move).
        self.rejuvenation = check_rejuvenation(
            rejuvenation, guided=guided or constant_reward is not None)
        if not 0 < rejuvenation_step <= 1:
            raise ConfigError(f"rejuvenation_step={rejuvenation_step!r} must be in (0, 1]; "
                              "try 0.5")
        self.rejuvenation_step = float(rejuvenation_step)
        self.constant_reward = None if constant_reward is None else _finite(constant_reward)
        if clip_sample is not None and not clip_sample > 0:
            raise ConfigError(f"clip_sample={clip_sample!r} must be None or > 0 (e.g. 1.0 for "
                               "images in [-1, 1])")
        self.clip_sample = clip_sample
        self.prior = prior
        self.reward_fn = reward
        self.alpha = float(alpha)
        self.schedule = schedule
        self.G, self.P = num_groups, num_particles
        self.context = context
        self.guided = guided
        self.tweedie = tweedie
        self.chunk_size = chunk_size
        self.checkpointing = gradient_checkpointing
        self.dtype = dtype or prior.dtype
        # Rewards and weights need range and precision even when particles are half precision.
        self.reward_dtype = torch.promote_types(self.dtype, torch.float32)
        self.device = torch.device(prior.device)
        self.latent_shape = tuple(prior.latent_shape)
        # The FeynmanKacModel's sizes; log-weights share the rewards' dtype.
        self.num_groups, self.num_particles = num_groups, num_particles
        self.num_steps = schedule.num_steps
        self.weight_dtype = self.reward_dtype

    # -- the Feynman–Kac model (optimizer.smc.model.FeynmanKacModel) ------------------------
    def initial(
        self, generator: torch.Generator | None, *, log_w: Tensor, origin: Tensor
    ) -> DiffusionParticles:
        """`x_{t_0} ~ N(0, I)` (`G x P x *latent_shape`), evaluated at `t_0`."""
        x = torch.randn((self.G, self.P, *self.latent_shape), generator=generator,
                        device=self.device, dtype=self.dtype)
        ev = self.evaluate(x, 0)
        return self.particles_cls(log_w=log_w, origin=origin, x=x, lookahead=ev.reward,
                                  x0_hat=ev.x0_hat, eps=ev.eps, grad=ev.grad, design=None)

    def move(
        self, particles: DiffusionParticles, k: int, lam_next: Tensor,
        generator: torch.Generator | None,
    ) -> Move[DiffusionParticles]:
        """`x_{t_{k+1}} ~ q(· | x_{t_k})`, evaluated there; the last move (`k = K - 1`) is the
        deterministic `x_0 = x̂0` and carries the exact reward `r(D(x_0))` and the designs."""
        prop = self.propose(particles, k, lam_next, generator)
        if self.rejuvenation != "none" and k < self.num_steps - 1:
            particles = particles.replace(parent_mean=prop.mean)  # the move's own parent
        if k == self.num_steps - 1:
            fin = self.final(prop.x)
            moved = particles.replace(x=prop.x, lookahead=fin.reward, x0_hat=prop.x, eps=None,
                                      grad=None, design=fin.design)
        else:
            ev = self.evaluate(prop.x, k + 1)
            moved = particles.replace(x=prop.x, lookahead=ev.reward, x0_hat=ev.x0_hat,
                                      eps=ev.eps, grad=ev.grad)
        return Move(particles=moved, log_ratio=prop.log_ratio)

    def reward(self, particles: DiffusionParticles) -> Tensor:
        """`G x P` reward the target tilts by: the look-ahead (exact after the last move)."""
        return particles.lookahead

    def rejuvenate(
        self, particles: DiffusionParticles, k: int, lam: Tensor, mask: Tensor,
        generator: torch.Generator | None,
    ) -> Rejuvenation[DiffusionParticles]:
        """A `π_k`-invariant MCMC move of `x_{t_k}` (``optimizer.das.rejuvenation``)."""
        return rejuvenate(self, particles, k, lam, mask, generator)

    # -- the diffusion pieces ---------------------------------------------------------------
    def evaluate(self, x: Tensor, k: int) -> Evaluation:
        """`ε̂, x̂0, r(D(x̂0))` and `∇_x r(D(x̂0(x)))` (or None) at step `k` for `G x P x ...`
        positions ``x``, in chunks of ``chunk_size`` rows."""
        flat = x.reshape(self.G * self.P, *self.latent_shape)
        B = flat.shape[0]
        step = B if self.chunk_size is None else self.chunk_size
        parts = [self._evaluate_rows(flat[i:i + step], k, slice(i, i + step))
                 for i in range(0, B, step)]
        shape = (self.G, self.P, *self.latent_shape)
        grads = [p.grad for p in parts if p.grad is not None]
        grad = torch.cat(grads) if grads else None
        return Evaluation(eps=torch.cat([p.eps for p in parts]).reshape(shape),
                          x0_hat=torch.cat([p.x0_hat for p in parts]).reshape(shape),
                          reward=torch.cat([p.reward for p in parts]).reshape(self.G, self.P),
                          grad=None if grad is None else grad.reshape(shape))

    def _evaluate_rows(self, x: Tensor, k: int, rows: slice) -> Evaluation:
        """``evaluate`` on `B` flat rows ``x`` (`B x *latent_shape`); fields have `B` rows."""
        t = self.schedule.timesteps[k]
        a = self.schedule.alpha_bar[k]
        ctx = None if self.context is None else self.context[rows]
        if self.constant_reward is not None:
            # Nothing reads D(x̂0) but the reward, whose value is known and whose gradient is 0.
            with torch.no_grad():
                eps = self.prior.predict_noise(x.to(self.prior.dtype), t, ctx).to(self.dtype)
                eps, x0 = self._x0(x, eps, a)
            return Evaluation(eps=eps, x0_hat=x0, reward=self._constant(x.shape[0], x.device),
                              grad=None)
        if not self.guided:
            with torch.no_grad():
                eps = self.prior.predict_noise(x.to(self.prior.dtype), t, ctx).to(self.dtype)
                eps, x0 = self._x0(x, eps, a)
                r = self._reward(self.prior.decode(x0.to(self.prior.dtype)))
                return Evaluation(eps=eps, x0_hat=x0, reward=r, grad=None)
        if self.tweedie:
            with torch.no_grad():  # ε̂ and x̂0 exactly as gradient-free; no denoiser graph
                eps = self.prior.predict_noise(x.to(self.prior.dtype), t, ctx).to(self.dtype)
                eps, x0 = self._x0(x, eps, a)
            r, grad = tweedie_lookahead(
                x0, a, decode=self.prior.decode, reward=self._reward, model_dtype=self.prior.dtype,
                clip_sample=self.clip_sample, checkpointing=self.checkpointing)
            return Evaluation(eps=eps, x0_hat=x0, reward=r, grad=grad)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            xm = xg.to(self.prior.dtype)
            if self.checkpointing:
                eps = checkpoint(self.prior.predict_noise, xm, t, ctx, use_reentrant=False)
            else:
                eps = self.prior.predict_noise(xm, t, ctx)
            eps, x0 = self._x0(xm, eps, a)
            if self.checkpointing:
                design = checkpoint(self.prior.decode, x0, use_reentrant=False)
            else:
                design = self.prior.decode(x0)
            r = self._reward(design)
            (grad,) = torch.autograd.grad(r.sum(), xg)
        return Evaluation(eps=eps.detach().to(self.dtype), x0_hat=x0.detach().to(self.dtype),
                          reward=r.detach(), grad=grad)

    def _x0(self, x: Tensor, eps: Tensor, a: float) -> tuple[Tensor, Tensor]:
        """`(ε̂, x̂0)` by Tweedie; with ``clip_sample`` the clipped `x̂0` and its consistent `ε̂`."""
        x0 = (x - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
        if self.clip_sample is None:
            return eps, x0
        x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return (x - math.sqrt(a) * x0) / math.sqrt(1.0 - a), x0

    def _reward(self, design: Tensor) -> Tensor:
        r = self.reward_fn(design)
        if not isinstance(r, Tensor) or r.shape != (design.shape[0],):
            shape = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise SamplerError(
                f"reward returned {shape} for a batch of {design.shape[0]} designs; a reward "
                f"must map a `B x *design_shape` Tensor to a `B`-dim Tensor (e.g. end with "
                f".sum(dim=-1) or .squeeze(-1))"
            )
        return r.to(self.reward_dtype)

    def _constant(self, rows: int, device: torch.device) -> Tensor:
        """`rows` copies of the constant reward, as ``_reward`` would return them."""
        assert self.constant_reward is not None
        return torch.full((rows,), self.constant_reward, dtype=self.reward_dtype, device=device)

    def final(self, x0: Tensor) -> FinalEvaluation:
        """Exact `r(D(x_0))` and the designs `D(x_0)` of clean `G x P` particles, no gradient."""
        flat = x0.reshape(self.G * self.P, *self.latent_shape)
        step = flat.shape[0] if self.chunk_size is None else self.chunk_size
        rewards, designs = [], []
        with torch.no_grad():
            for i in range(0, flat.shape[0], step):
                design = self.prior.decode(flat[i:i + step].to(self.prior.dtype))
                rewards.append(self._reward(design) if self.constant_reward is None
                               else self._constant(design.shape[0], design.device))
                designs.append(design)
        design = torch.cat(designs)
        return FinalEvaluation(reward=torch.cat(rewards).reshape(self.G, self.P),
                               design=design.reshape(self.G, self.P, *design.shape[1:]))

    def propose(
        self, particles: DiffusionParticles, k: int, lam_next: Tensor,
        generator: torch.Generator | None,
    ) -> Proposal:
        """Draw `x_s ~ q(· | x_t)` for step `k`, with `log p(x_s|x_t) - log q(x_s|x_t)`.

        With shift `δ = σ² λ g / α` and `x_s = μ + δ + σ z`, the ratio of the two Gaussians is
        `-(z·δ)/σ - |δ|²/(2σ²) = -σ λ (z·g)/α - σ² λ² |g|² / (2α²)`, computed without dividing
        by `σ`. At the last step (`σ = 0`) the move is `x_0 = x̂0` and the ratio is 0.
        """
        s = self.schedule
        # x̂0 and ε̂ are None only after the last step, which is never proposed from
        assert particles.x0_hat is not None and particles.eps is not None
        mean = s.transition_mean(k, particles.x0_hat, particles.eps)
        sigma = s.sigmas[k]
        log_ratio = torch.zeros_like(particles.log_w)
        if sigma == 0.0:
            return Proposal(x=mean, log_ratio=log_ratio, mean=mean)
        z = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        if not self.guided or particles.grad is None:
            return Proposal(x=mean + sigma * z, log_ratio=log_ratio, mean=mean)
        lam = lam_next.to(mean.dtype).reshape(self.G, 1, *([1] * len(self.latent_shape)))
        g = particles.grad
        x_next = mean + (sigma**2 / self.alpha) * lam * g + sigma * z
        # Sums over the whole latent in the weights' dtype (>= float32): `|g|²` of a float16
        # latent overflows float16 for the large gradients of the first steps.
        wd = particles.log_w.dtype
        dims = tuple(range(2, g.dim()))
        zg = (z.to(wd) * g.to(wd)).sum(dim=dims)
        gg = g.to(wd).square().sum(dim=dims)
        lam2 = lam_next.to(wd)[:, None]
        return Proposal(x=x_next, log_ratio=(-(sigma / self.alpha) * lam2 * zg
                                             - 0.5 * (sigma / self.alpha) ** 2 * lam2**2 * gg),
                        mean=mean)
