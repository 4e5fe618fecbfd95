r"""Tempered SMC over any ``FeynmanKacModel``: tempering, reweighting, adaptive resampling.

Kept apart from the model (``optimizer.smc.model``): this module knows nothing about what a
particle is beyond the model's ``initial / move / reward`` and the ``Particles`` container.

One step `k` (from `x_k` to `x_{k+1}`; `k = K - 1` is the last):

1. `λ_{k+1}` from the tempering schedule, read from `r_k / α` and the weights (`λ_K = 1`);
2. move every particle with the model (`x_{k+1} ~ Q_{k+1}`), which returns `log M - log Q`;
3. `log w += log M - log Q + λ_{k+1} r_{k+1}/α - λ_k r_k/α` (``log_potential``);
4. record ESS, `λ`, the weighted mean reward; unless last, resample the groups whose
   `ESS < κ P`, bank their mean weight into `log Ẑ`, and gather *every* carried field
   through ``Particles.__getitem__``;
5. with ``rejuvenation_steps = n > 0`` (resample-move), apply the model's `π_{k+1}`-invariant
   MCMC move ``n`` times to the resampled groups (``RejuvenatingModel.rejuvenate``): the
   copies of one parent spread apart, the target and the weights stay as they are.

A schedule that also implements ``IncrementObserver`` is shown the scaled increments
`r_{k+1}/α - r_k/α` of every move (before reweighting), so it can predict the next one.

After the last step `log Ẑ += log mean_p w_p`, an unbiased estimate of
`E_{M}[exp(r_K(x_K)/α)]` (for a model whose moves are exact, `log M - log Q` correct).

The loop is structurally free of host synchronization: no ``.item()``, ``.cpu()``,
``bool(tensor)`` or Python ``if`` on tensor values between the first and last step; per-group
choices use ``torch.where`` and `K` is a Python int. The only synchronizing check (non-finite
rewards) runs once after the loop. Rejuvenation is the exception: it reads one bool per step
(did any group resample?) so that steps without resampling skip the move's network calls.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

import torch
from torch import Tensor

from optimizer.smc.errors import NonFiniteRewardError, SMCConfigError
from optimizer.smc.model import FeynmanKacModel, ParticlesT, RejuvenatingModel
from optimizer.smc.resampling import Resampler, resample_groups
from optimizer.smc.tempering import IncrementObserver, TemperingSchedule
from optimizer.smc.weights import normalize_log_weights


def log_potential(reward: Tensor, lam: Tensor, alpha: float) -> Tensor:
    """`λ r / α` (`G x P`, `λ` per group); `λ = 0` gives 0 even for infinite rewards.

    >>> log_potential(torch.tensor([[-math.inf, 1.0]]), torch.zeros(1), 0.5)
    tensor([[0., 0.]])
    """
    lam = lam.to(reward.dtype)[:, None]
    return torch.where(lam > 0, lam * reward / alpha, torch.zeros_like(reward))


@dataclass(frozen=True)
class SMCState(Generic[ParticlesT]):
    """Where a run stands before step ``k``.

    Attributes:
        particles: the `G x P` particles at step `k` (resampled, weights since resampling).
        lam: `G`-dim Tensor `λ_k`.
        log_z: `G`-dim Tensor, `log Ẑ` banked at the resampling events so far.
        k: index of the next step (`K` once the run is over).
    """

    particles: ParticlesT
    lam: Tensor
    log_z: Tensor
    k: int


@dataclass(frozen=True)
class StepRecord:
    """Diagnostics of one step, on the device (`G`-dim Tensors unless noted).

    Attributes:
        lam: `λ_{k+1}` used by the step.
        ess: ESS after reweighting (before any resampling).
        resampled: bool, whether the group was resampled after the step.
        ancestors: `G x P` long ancestors chosen (identity where not resampled).
        mean_reward: weighted mean of `r_{k+1}` after reweighting.
        nonfinite: bool, whether some `r_{k+1}` of the group is NaN or infinite.
        accept_rate: float, fraction of the rejuvenation moves accepted (0 where none ran).
    """

    lam: Tensor
    ess: Tensor
    resampled: Tensor
    ancestors: Tensor
    mean_reward: Tensor
    nonfinite: Tensor
    accept_rate: Tensor


@dataclass(frozen=True)
class StepOutput(Generic[ParticlesT]):
    """What ``TemperedSMC.step`` returns: the next state and the step's diagnostics."""

    state: SMCState[ParticlesT]
    record: StepRecord


@dataclass(frozen=True)
class History:
    """The step records of a run stacked to `T x G` (`T = K`), row `k` for step `k`.

    Attributes:
        lambdas, ess, resampled, mean_reward, accept_rate: `T x G` (see ``StepRecord``).
        ancestors: `T x G x P`.
        nonfinite: `(T + 1) x G`; row 0 is the initial particles.
    """

    lambdas: Tensor
    ess: Tensor
    resampled: Tensor
    ancestors: Tensor
    mean_reward: Tensor
    nonfinite: Tensor
    accept_rate: Tensor

    @classmethod
    def stack(cls, initial_nonfinite: Tensor, records: Sequence[StepRecord]) -> History:
        """Stack per-step records (one device op per field, no host sync)."""
        return cls(
            lambdas=torch.stack([r.lam for r in records]),
            ess=torch.stack([r.ess for r in records]),
            resampled=torch.stack([r.resampled for r in records]),
            ancestors=torch.stack([r.ancestors for r in records]),
            mean_reward=torch.stack([r.mean_reward for r in records]),
            nonfinite=torch.stack([initial_nonfinite, *(r.nonfinite for r in records)]),
            accept_rate=torch.stack([r.accept_rate for r in records]),
        )


@dataclass(frozen=True)
class SMCResult(Generic[ParticlesT]):
    """What ``TemperedSMC.run`` returns.

    Attributes:
        particles: the final weighted particles (not resampled after the last step).
        log_z: `G`-dim Tensor `log Ẑ`.
        history: the stacked step diagnostics.
    """

    particles: ParticlesT
    log_z: Tensor
    history: History


class TemperedSMC(Generic[ParticlesT]):
    """Tempered SMC over a ``FeynmanKacModel``.

    Args:
        model: the Feynman–Kac model.
        tempering: a ``TemperingSchedule``.
        resampler: a scheme from ``optimizer.smc.RESAMPLERS``.
        ess_threshold: `κ`; a group is resampled when its `ESS < κ P`.
        generator: the source of all randomness.
        rejuvenation_steps: MCMC moves after each resampling (0: none); the model must be a
            ``RejuvenatingModel``. Each costs what the model's move costs (for DAS, one more
            network and reward evaluation of every particle of the resampled groups).

    >>> sampler = TemperedSMC(model, tempering=AdaptiveTempering(), resampler=systematic,
    ...                       ess_threshold=0.5, generator=torch.Generator().manual_seed(0))
    >>> result = sampler.run()
    >>> state = sampler.init(); out = sampler.step(state)  # or step by step
    """

    def __init__(
        self,
        model: FeynmanKacModel[ParticlesT],
        *,
        tempering: TemperingSchedule,
        resampler: Resampler,
        ess_threshold: float,
        generator: torch.Generator | None,
        rejuvenation_steps: int = 0,
    ) -> None:
        if not isinstance(rejuvenation_steps, int) or rejuvenation_steps < 0:
            raise SMCConfigError(f"rejuvenation_steps={rejuvenation_steps!r} must be an integer "
                                 ">= 0; try 1")
        if rejuvenation_steps and not isinstance(model, RejuvenatingModel):
            raise SMCConfigError(f"rejuvenation_steps={rejuvenation_steps} needs a model with a "
                                 "rejuvenate(particles, k, lam, mask, generator) method; "
                                 f"{type(model).__name__} has none (use 0)")
        self.rejuvenation_steps = rejuvenation_steps
        self.model = model
        self.tempering = tempering
        self.resampler = resampler
        self.ess_threshold = ess_threshold
        self.generator = generator
        self.num_steps = model.num_steps
        self.weight_dtype = model.weight_dtype

    def init(self) -> SMCState[ParticlesT]:
        """Initial particles at step 0 with equal weights, `λ_0 = 0` and `log Ẑ = 0`."""
        m = self.model
        G, P, dev = m.num_groups, m.num_particles, m.device
        zeros = torch.zeros(G, P, device=dev, dtype=self.weight_dtype)
        origin = torch.arange(P, device=dev).expand(G, P).clone()
        particles = m.initial(self.generator, log_w=zeros, origin=origin)
        lam = torch.zeros(G, device=dev, dtype=self.weight_dtype)
        log_z = torch.zeros(G, device=dev, dtype=self.weight_dtype)
        if isinstance(self.tempering, IncrementObserver):
            self.tempering.reset()  # a new run: forget the last run's increments
        return SMCState(particles=particles, lam=lam, log_z=log_z, k=0)

    def step(self, state: SMCState[ParticlesT]) -> StepOutput[ParticlesT]:
        """Advance from step `k` to `k + 1`: temper, move, reweight, maybe resample."""
        m, K, wd = self.model, self.num_steps, self.weight_dtype
        particles, lam, log_z, k = state.particles, state.lam, state.log_z, state.k
        last = k == K - 1
        r_old = m.reward(particles).to(wd)
        if last:
            lam_next = torch.ones_like(lam)
        else:
            scaled = r_old / m.alpha
            lam_next = self.tempering.next_lambda(k + 1, K, lam, scaled, particles.log_w)
            lam_next = torch.maximum(lam_next.to(lam.dtype), lam).clamp(max=1.0)
        move = m.move(particles, k, lam_next, self.generator)
        r_next = m.reward(move.particles).to(wd)
        if not last and isinstance(self.tempering, IncrementObserver):
            self.tempering.observe(k + 1, (r_next - r_old) / m.alpha, particles.log_w)
        log_w = (particles.log_w + move.log_ratio.to(wd)
                 + log_potential(r_next, lam_next, m.alpha) - log_potential(r_old, lam, m.alpha))
        moved = move.particles.replace(log_w=log_w)
        log_W = normalize_log_weights(log_w)
        threshold = 0.0 if last else self.ess_threshold
        ancestors, resampled, ess = resample_groups(log_w, threshold, self.resampler,
                                                    self.generator)
        accept_rate = torch.zeros_like(ess)
        if not last:
            # Resampled groups bank their mean weight into log Ẑ and restart from equal weights.
            log_mean_w = torch.logsumexp(log_w, dim=-1) - math.log(m.num_particles)
            log_z = torch.where(resampled, log_z + log_mean_w, log_z)
            moved = moved[ancestors]  # every field follows its particle
            moved = moved.replace(log_w=torch.where(resampled[:, None],
                                                    torch.zeros_like(moved.log_w), moved.log_w))
            # The one host read of a rejuvenating run: skip the moves' work when nothing resampled.
            if self.rejuvenation_steps and bool(resampled.any()):
                moved, accept_rate = self._rejuvenate(moved, k + 1, lam_next, resampled)
        record = StepRecord(lam=lam_next, ess=ess, resampled=resampled, ancestors=ancestors,
                            mean_reward=(log_W.exp() * r_next).sum(-1),
                            nonfinite=~torch.isfinite(r_next).all(-1), accept_rate=accept_rate)
        return StepOutput(state=SMCState(particles=moved, lam=lam_next, log_z=log_z, k=k + 1),
                          record=record)

    def _rejuvenate(
        self, particles: ParticlesT, k: int, lam: Tensor, mask: Tensor
    ) -> tuple[ParticlesT, Tensor]:
        """``rejuvenation_steps`` model moves of the ``mask`` groups; returns the particles and
        the `G`-dim fraction of moves accepted (0 outside ``mask``)."""
        model = self.model
        assert isinstance(model, RejuvenatingModel)  # checked in __init__
        accepted = torch.zeros_like(particles.log_w)
        for _ in range(self.rejuvenation_steps):
            out = model.rejuvenate(particles, k, lam, mask, self.generator)
            particles = out.particles
            accepted = accepted + out.accepted.to(accepted.dtype)
        rate = accepted.mean(-1) / self.rejuvenation_steps
        return particles, torch.where(mask, rate, torch.zeros_like(rate))

    def run(self) -> SMCResult[ParticlesT]:
        """All `K` steps; raises ``NonFiniteRewardError`` if some reward was NaN or infinite."""
        state = self.init()
        initial_nonfinite = ~torch.isfinite(self.model.reward(state.particles)).all(-1)
        records: list[StepRecord] = []
        for _ in range(self.num_steps):  # no host sync inside (see module docstring)
            out = self.step(state)
            state = out.state
            records.append(out.record)
        log_z = (state.log_z + torch.logsumexp(state.particles.log_w, dim=-1)
                 - math.log(self.model.num_particles))
        history = History.stack(initial_nonfinite, records)
        check_finite(history)
        return SMCResult(particles=state.particles, log_z=log_z, history=history)


def check_finite(history: History) -> None:
    """Raise ``NonFiniteRewardError`` at the first step and group with a non-finite reward.

    The one host synchronization of a run: call it after the loop.
    """
    bad = history.nonfinite
    if bool(bad.any()):
        step, group = (int(v) for v in torch.nonzero(bad)[0])
        raise NonFiniteRewardError(step, group)
