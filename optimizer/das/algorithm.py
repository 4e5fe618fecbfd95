r"""The SMC algorithm of DAS: particles, tempering, reweighting, adaptive resampling.

Kept apart from the target (``optimizer.das.target``): this module knows nothing about
diffusion beyond the target's ``initial / evaluate / propose / log_potential / final``.

One step `k` (from `t_k` to `t_{k+1}`, or to `x_0` when `k = K - 1`):

1. `λ_{k+1}` from the tempering schedule (`λ_K = 1`);
2. move every particle with the target's proposal; `log p - log q` from the target;
3. evaluate `ε̂, x̂0, r(D(x̂0)), ∇` at the new positions (the exact `r(D(x_0))` at the end);
4. `log w += log p - log q + λ_{k+1} r_new / α - λ_k r_old / α`;
5. record ESS, λ, weighted look-ahead reward; unless last, resample the groups whose
   `ESS < κ P` and gather *every* carried field through ``Particles.__getitem__``.

The loop is structurally free of host synchronization: no ``.item()``, ``.cpu()``,
``bool(tensor)`` or Python ``if`` on tensor values between the first and last step; per-group
choices use ``torch.where`` and the schedule is Python floats computed before the loop. The only
synchronizing check (non-finite rewards) runs once after the loop.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from optimizer.das.target import TiltedTarget
from optimizer.errors import SamplerError
from optimizer.smc.particles import Particles
from optimizer.smc.resampling import Resampler, resample_groups
from optimizer.smc.tempering import TemperingSchedule
from optimizer.smc.weights import normalize_log_weights


class StepRecord:
    """Per-step diagnostics kept on the device (stacked to `T x G` after the loop)."""

    def __init__(self) -> None:
        self.ess: list[Tensor] = []
        self.lambdas: list[Tensor] = []
        self.resampled: list[Tensor] = []
        self.lookahead: list[Tensor] = []
        self.ancestors: list[Tensor] = []
        self.nonfinite: list[Tensor] = []
        self.designs: Tensor | None = None  # `G x P x *design_shape`, set by the last step


class DASSampler:
    """Tempered SMC over a ``TiltedTarget``.

    Args:
        target: the Feynman–Kac model.
        tempering: a ``TemperingSchedule``.
        resampler: a scheme from ``optimizer.smc.RESAMPLERS``.
        ess_threshold: `κ`.
        generator: the source of all randomness.

    >>> sampler = DASSampler(target, tempering=AdaptiveTempering(), resampler=systematic,
    ...                      ess_threshold=0.5, generator=torch.Generator().manual_seed(0))
    >>> particles, log_z, record = sampler.run()
    """

    #: The particle container; a subclass may add fields (they are carried and permuted too).
    particles_cls: type[Particles] = Particles

    def __init__(
        self,
        target: TiltedTarget,
        *,
        tempering: TemperingSchedule,
        resampler: Resampler,
        ess_threshold: float,
        generator: torch.Generator | None,
    ) -> None:
        self.target = target
        self.tempering = tempering
        self.resampler = resampler
        self.ess_threshold = ess_threshold
        self.generator = generator
        self.num_steps = target.schedule.num_steps
        self.weight_dtype = torch.promote_types(target.dtype, torch.float32)

    def init(self) -> tuple[Particles, Tensor, Tensor]:
        """Initial particles at `t_0`, `λ_0 = 0` (`G`) and `log Ẑ = 0` (`G`)."""
        t = self.target
        x = t.initial(self.generator)
        eps, x0, r, g = t.evaluate(x, 0)
        zeros = torch.zeros(t.G, t.P, device=x.device, dtype=self.weight_dtype)
        origin = torch.arange(t.P, device=x.device).expand(t.G, t.P).clone()
        particles = self.particles_cls(x=x, log_w=zeros, lookahead=r, x0_hat=x0, eps=eps, grad=g,
                              origin=origin)
        lam = torch.zeros(t.G, device=x.device, dtype=self.weight_dtype)
        log_z = torch.zeros(t.G, device=x.device, dtype=self.weight_dtype)
        return particles, lam, log_z

    def step(
        self, particles: Particles, lam: Tensor, log_z: Tensor, k: int, record: StepRecord
    ) -> tuple[Particles, Tensor, Tensor]:
        """Advance from `t_k` to `t_{k+1}` (or `x_0`); returns ``(particles, λ_{k+1}, log Ẑ)``."""
        t, K = self.target, self.num_steps
        last = k == K - 1
        if last:
            lam_next = torch.ones_like(lam)
        else:
            scaled = particles.lookahead.to(self.weight_dtype) / t.alpha
            lam_next = self.tempering.next_lambda(k + 1, K, lam, scaled, particles.log_w)
            lam_next = torch.maximum(lam_next.to(lam.dtype), lam).clamp(max=1.0)
        x_next, log_ratio = t.propose(particles, k, lam_next, self.generator)
        if last:  # deterministic move to x_0; the exact reward closes the weights
            eps = x0 = grad = None
            x0 = x_next
            r_next, record.designs = t.final(x_next)
        else:
            eps, x0, r_next, grad = t.evaluate(x_next, k + 1)
        r_next_w = r_next.to(self.weight_dtype)
        log_w = (particles.log_w + log_ratio.to(self.weight_dtype)
                 + t.log_potential(r_next_w, lam_next)
                 - t.log_potential(particles.lookahead.to(self.weight_dtype), lam))
        moved = particles.replace(x=x_next, log_w=log_w, lookahead=r_next, x0_hat=x0, eps=eps,
                                  grad=grad)
        log_W = normalize_log_weights(log_w)
        record.lambdas.append(lam_next)
        record.lookahead.append((log_W.exp() * r_next_w).sum(-1))
        record.nonfinite.append(~torch.isfinite(r_next_w).all(-1))
        threshold = 0.0 if last else self.ess_threshold
        ancestors, resampled, ess = resample_groups(log_w, threshold, self.resampler,
                                                    self.generator)
        record.ess.append(ess)
        record.resampled.append(resampled)
        record.ancestors.append(ancestors)
        if last:
            return moved, lam_next, log_z
        # Resampled groups bank their mean weight into log Ẑ and restart from equal weights.
        log_mean_w = torch.logsumexp(log_w, dim=-1) - math.log(t.P)
        log_z = torch.where(resampled, log_z + log_mean_w, log_z)
        moved = moved[ancestors]  # every field follows its particle
        moved = moved.replace(log_w=torch.where(resampled[:, None],
                                                torch.zeros_like(moved.log_w), moved.log_w))
        return moved, lam_next, log_z

    def run(self) -> tuple[Particles, Tensor, StepRecord]:
        """All `K` steps; returns final particles, `log Ẑ` (`G`) and the step record."""
        particles, lam, log_z = self.init()
        record = StepRecord()
        record.nonfinite.append(~torch.isfinite(particles.lookahead).all(-1))
        for k in range(self.num_steps):  # no host sync inside (see module docstring)
            particles, lam, log_z = self.step(particles, lam, log_z, k, record)
        log_z = log_z + torch.logsumexp(particles.log_w, dim=-1) - math.log(self.target.P)
        self._check_finite(record)
        return particles, log_z, record

    def _check_finite(self, record: StepRecord) -> None:
        bad = torch.stack(record.nonfinite)  # (T + 1) x G
        if bool(bad.any()):  # one sync, after the loop
            step, group = (int(v) for v in torch.nonzero(bad)[0])
            raise SamplerError(
                f"reward returned NaN or infinite values at step {step} (0 = initial "
                f"particles) for group {group}; the reward must be finite on every decoded "
                f"design, including noisy early look-ahead estimates (clip or guard it, "
                f"e.g. torch.nan_to_num(r, nan=-1e4))"
            )
