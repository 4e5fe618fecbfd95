r"""Tempering schedules `0 = λ_0 <= λ_1 <= ... <= λ_K = 1` for the tilted targets.

Intermediate target at step `k`: `π_k(x) ∝ p(x_{t_k}) exp(λ_k r(x̂0(x_{t_k})) / α)`.

A schedule is any object with ``next_lambda(step, num_steps, current, scaled_reward, log_w)``
returning the `G`-dim Tensor `λ_step`; fixed schedules ignore the particles, the adaptive one
reads them. All return tensors on the particles' device, with no host synchronization.

A schedule may also be an ``IncrementObserver``: the sampler then shows it the scaled reward
increment `r_k/α - r_{k-1}/α` of every particle after each move, and ``PredictiveTempering``
uses them to foresee how much the next move's look-ahead will spread.
"""
from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from optimizer.smc.errors import SMCConfigError, format_choice_error
from optimizer.smc.weights import conditional_ess_fraction


@runtime_checkable
class TemperingSchedule(Protocol):
    """Chooses `λ_step` for every group."""

    def next_lambda(
        self, step: int, num_steps: int, current: Tensor, scaled_reward: Tensor, log_w: Tensor
    ) -> Tensor:
        """Return `λ_step`.

        Args:
            step: index `k` in `[1, K]` of the λ to produce (`K` = ``num_steps``).
            num_steps: `K`; the sampler forces `λ_K = 1` regardless.
            current: `G`-dim Tensor `λ_{k-1}`.
            scaled_reward: `G x P`-dim Tensor `r(x̂0(x_{t_{k-1}})) / α` of the current particles.
            log_w: `G x P`-dim Tensor of current log-weights.

        Returns:
            `G`-dim Tensor `λ_k` with `λ_{k-1} <= λ_k <= 1`.
        """
        ...


@runtime_checkable
class IncrementObserver(Protocol):
    """A (stateful) schedule that watches the reward increments of the moves of one run."""

    def reset(self) -> None:
        """Forget everything observed: a new run starts."""
        ...

    def observe(self, step: int, increment: Tensor, log_w: Tensor) -> None:
        """Record the move to step ``step``.

        Args:
            step: index `k` in `[1, K)` of the particles just moved to.
            increment: `G x P`-dim Tensor `r_k(x_k)/α - r_{k-1}(x_{k-1})/α` of each particle.
            log_w: `G x P`-dim Tensor of the log-weights before the move.
        """
        ...


class ExponentialTempering:
    """The DAS paper's schedule `λ_i = min((1 + γ)^i - 1, 1)`.

    Args:
        gamma: growth rate `γ`. None picks `γ = 2^{1/(f K)} - 1` so that `λ` reaches 1 at step
            `f K` (``end_fraction`` f = 0.87 reproduces the paper's γ = 0.008 at K = 100).

    >>> ExponentialTempering(gamma=0.008).value(87, 100)
    1.0
    """

    def __init__(self, gamma: float | None = None, end_fraction: float = 0.87) -> None:
        if gamma is not None and not gamma > 0:
            raise SMCConfigError(f"tempering gamma={gamma!r} must be > 0; try 0.008 for 100 steps")
        if not 0 < end_fraction <= 1:
            raise SMCConfigError(f"tempering end_fraction={end_fraction!r} must be in (0, 1]")
        self.gamma = gamma
        self.end_fraction = end_fraction

    def value(self, step: int, num_steps: int) -> float:
        """`λ_step` of a `num_steps`-step run (1 from the step it reaches 1, and at the end)."""
        gamma = self.gamma
        if gamma is None:
            gamma = 2.0 ** (1.0 / max(self.end_fraction * num_steps, 1.0)) - 1.0
        lam = (1.0 + gamma) ** step - 1.0
        return 1.0 if lam >= 1.0 - 1e-9 or step >= num_steps else lam

    def next_lambda(
        self, step: int, num_steps: int, current: Tensor, scaled_reward: Tensor, log_w: Tensor
    ) -> Tensor:
        return torch.clamp(torch.full_like(current, self.value(step, num_steps)), min=current)


class PolynomialTempering:
    """`λ_i = min((i / (f K))^p, 1)` with power `p` and end fraction `f`.

    >>> PolynomialTempering(power=2.0).value(5, 10)
    0.25
    """

    def __init__(self, power: float = 2.0, end_fraction: float = 1.0) -> None:
        if not power > 0:
            raise SMCConfigError(f"tempering power={power!r} must be > 0; try 1.0 (linear) or 2.0")
        if not 0 < end_fraction <= 1:
            raise SMCConfigError(f"tempering end_fraction={end_fraction!r} must be in (0, 1]")
        self.power = power
        self.end_fraction = end_fraction

    def value(self, step: int, num_steps: int) -> float:
        """`λ_step = min((step / (f K))^p, 1)`."""
        return min((step / (self.end_fraction * num_steps)) ** self.power, 1.0)

    def next_lambda(
        self, step: int, num_steps: int, current: Tensor, scaled_reward: Tensor, log_w: Tensor
    ) -> Tensor:
        return torch.clamp(torch.full_like(current, self.value(step, num_steps)), min=current)


class AdaptiveTempering:
    """Pick `λ_k` so the conditional ESS of the incremental weights hits a target.

    `λ_k = clamp(λ_{k-1} + δ*, floor_k, cap_k)` with
    `δ* = max{δ ∈ [0, 1 - λ_{k-1}] : CESS(δ) >= ρ}`, where
    `CESS(δ) = (Σ W_i u_i)² / Σ W_i u_i²`, `u_i = exp(δ r̂_i / α)`, `r̂_i = r(x̂0(x_t^i))`.

    1. if `CESS(1 - λ_{k-1}) >= ρ`, take `δ* = 1 - λ_{k-1}`;
    2. otherwise search `δ` on `[0, 1 - λ_{k-1}]` by vectorized bisection: each of ``rounds``
       rounds evaluates `CESS` at ``points`` evenly spaced values of the current bracket at
       once (every group too) and keeps the sub-bracket where it crosses `ρ` (`CESS` is
       non-increasing in `δ`); ``points=2`` is plain bisection, the default 16 points x 5
       rounds resolve `δ*` to `16^{-5}` (1e-6) of the span in 5 batched evaluations;
    3. clamp to the ``cap`` schedule (default: the paper's exponential one) and the ``floor``
       schedule (default: `(k/K)²`, so `λ` reaches 1 by the last step without a big jump).

    Why a cap: at high noise `x̂0(x_t)` is nearly the same for every particle, so the look-ahead
    rewards barely differ and an uncapped ESS rule would jump to `λ = 1` at the first step,
    trusting the least informative look-ahead fully. The cap keeps the paper's pace; the
    adaptive rule slows down wherever the look-ahead spreads faster than the ESS allows.

    No inner optimizer, no data-dependent loop, no host sync: a fixed number of batched ops.

    Args:
        target: `ρ` in (0, 1), the CESS fraction to keep per step.
        rounds: bracket-refinement rounds.
        points: CESS evaluations per round (>= 2).
        cap: fixed schedule bounding `λ_k` from above (None: no cap).
        floor: fixed schedule bounding `λ_k` from below (None: no floor).

    >>> sched = AdaptiveTempering(target=0.9)
    >>> lam = sched.next_lambda(1, 10, torch.zeros(1), torch.randn(1, 64), torch.zeros(1, 64))
    """

    def __init__(
        self,
        target: float = 0.9,
        rounds: int = 5,
        points: int = 16,
        cap: ExponentialTempering | PolynomialTempering | None | Literal["default"] = "default",
        floor: ExponentialTempering | PolynomialTempering | None | Literal["default"] = "default",
    ) -> None:
        if not 0 < target < 1:
            raise SMCConfigError(f"adaptive tempering target={target!r} must be in (0, 1); try 0.9")
        if rounds < 1:
            raise SMCConfigError(f"adaptive tempering rounds={rounds!r} must be >= 1; try 3")
        if points < 2:
            raise SMCConfigError(f"adaptive tempering points={points!r} must be >= 2; try 16")
        self.target = target
        self.rounds = rounds
        self.points = points
        self.cap = ExponentialTempering() if cap == "default" else cap
        self.floor = PolynomialTempering(power=2.0) if floor == "default" else floor

    def _log_penalty(self, lam: Tensor) -> Tensor | None:
        """Extra `log` factor of the CESS at candidate `λ` (`G x M`); None: no factor."""
        return None

    def next_lambda(
        self, step: int, num_steps: int, current: Tensor, scaled_reward: Tensor, log_w: Tensor
    ) -> Tensor:
        # Non-finite rewards count as hopeless particles; a finite stand-in avoids 0 * inf.
        r = torch.nan_to_num(scaled_reward.to(log_w.dtype), nan=-1e30, posinf=1e30, neginf=-1e30)
        # Shift rewards per group: CESS is invariant to it and exp stays in range.
        r = r - r.max(dim=-1, keepdim=True).values
        cur = current.to(log_w.dtype)
        span = (1.0 - cur).clamp_min(0.0)
        log_W = log_w - torch.logsumexp(log_w, dim=-1, keepdim=True)  # once, not per round

        def feasible(delta: Tensor) -> Tensor:  # `G x M` candidate increments → `G x M` bool
            inc = delta[:, :, None] * r[:, None, :]
            frac = conditional_ess_fraction(log_W[:, None, :], inc, normalized=True)
            penalty = self._log_penalty(cur[:, None] + delta)
            if penalty is not None:
                frac = frac * torch.exp(penalty)
            return frac >= self.target

        # Fractions 1/M .. M/M of the bracket; the bracket's lower end is always feasible.
        frac = torch.arange(1, self.points + 1, device=r.device, dtype=r.dtype) / self.points
        lo, width = torch.zeros_like(cur), span
        for _ in range(self.rounds):
            ok = feasible(lo[:, None] + width[:, None] * frac)  # G x M, a prefix of Trues
            n_ok = ok.sum(-1).to(r.dtype)  # feasible points: lo + n_ok/M * width is the last
            lo = lo + width * n_ok / self.points
            width = width / self.points
        lam = (cur + lo).clamp(max=1.0)
        if self.cap is not None:
            lam = torch.clamp(lam, max=self.cap.value(step, num_steps))
        if self.floor is not None:
            lam = torch.clamp(lam, min=self.floor.value(step, num_steps))
        lam = torch.maximum(lam, cur)
        return lam.to(current.dtype)


class PredictiveTempering(AdaptiveTempering):
    r"""Adaptive tempering that also budgets for the next move's look-ahead spread.

    The incremental log-weight of the move to step `k+1` is
    `λ_{k+1} r_{k+1}/α - λ_k r_k/α = (λ_{k+1} - λ_k) r_k/α + λ_{k+1} d`, with `d = (r_{k+1} -
    r_k)/α` the change of each particle's look-ahead over the move. ``AdaptiveTempering`` sees
    only the first term; when `x̂0` sharpens (a digit "appears" mid-run) the second dominates,
    and once `λ` is large it collapses the ESS whatever the next `λ`. Here `d` is predicted:

    1. ``observe`` records `v_k = Var_W(d)` of every move (the weighted variance of the
       increments just seen, per group);
    2. the next move's `v̂ = v_k · clip(v_k / v_{k-1}, 1, growth_max)` (the spread's recent
       growth, extrapolated one step, never predicted to shrink);
    3. with `d_i ~ N(0, v̂)` independent of `r`, the expected CESS factorizes:
       `E-CESS(λ') = CESS((λ' - λ_k) r/α) · exp(-λ'² v̂)`, and
       `λ_{k+1} = max{λ' ∈ [λ_k, 1] : E-CESS(λ') >= ρ}` by the same batched bisection;
    4. clamp to ``cap`` and ``floor`` as ``AdaptiveTempering`` does.

    Compared with ``AdaptiveTempering`` it holds `λ` back exactly at the steps where the
    look-ahead spreads fast; its default ``cap`` (`λ_k <= (k/K)^3`) keeps `λ` low while the
    look-ahead is still uninformative (a jump in `d` is seen only after its first move, so a
    large `λ` by then could not be undone), and its ``floor`` (`(k/K)^4`) makes it catch up
    by the end. It is stateful (one run at a time); the sampler calls ``reset`` at ``init``.

    Args:
        target: `ρ` in (0, 1).
        growth_max: largest one-step growth factor of `v` extrapolated (>= 1).
        rounds, points, cap, floor: as ``AdaptiveTempering``.

    >>> sched = PredictiveTempering()
    >>> sched.reset(); sched.observe(1, torch.randn(1, 64), torch.zeros(1, 64))
    >>> lam = sched.next_lambda(2, 10, torch.zeros(1), torch.randn(1, 64), torch.zeros(1, 64))
    """

    def __init__(
        self,
        target: float = 0.9,
        growth_max: float = 4.0,
        rounds: int = 5,
        points: int = 16,
        cap: ExponentialTempering | PolynomialTempering | None | Literal["default"] = "default",
        floor: ExponentialTempering | PolynomialTempering | None | Literal["default"] = "default",
    ) -> None:
        super().__init__(
            target=target, rounds=rounds, points=points,
            cap=PolynomialTempering(power=3.0) if cap == "default" else cap,
            floor=PolynomialTempering(power=4.0) if floor == "default" else floor)
        if not growth_max >= 1:
            raise SMCConfigError(f"predictive tempering growth_max={growth_max!r} must be >= 1; "
                                 "try 4.0")
        self.growth_max = float(growth_max)
        self._var: Tensor | None = None
        self._prev_var: Tensor | None = None

    def reset(self) -> None:
        self._var = self._prev_var = None

    def observe(self, step: int, increment: Tensor, log_w: Tensor) -> None:
        d = torch.nan_to_num(increment.to(log_w.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        W = torch.softmax(log_w, dim=-1)
        mean = (W * d).sum(-1, keepdim=True)
        self._prev_var, self._var = self._var, (W * (d - mean).square()).sum(-1)

    def predicted_variance(self) -> Tensor | None:
        """`v̂`, the `G`-dim predicted variance of the next move's scaled increments."""
        if self._var is None:
            return None
        if self._prev_var is None:
            return self._var
        tiny = torch.finfo(self._var.dtype).tiny
        growth = (self._var / self._prev_var.clamp_min(tiny)).clamp(1.0, self.growth_max)
        return self._var * growth

    def _log_penalty(self, lam: Tensor) -> Tensor | None:
        v = self.predicted_variance()
        return None if v is None else -lam.square() * v.to(lam.dtype)[:, None]


TEMPERING_NAMES = ("adaptive", "exponential", "polynomial", "predictive")


def make_tempering(spec: str | TemperingSchedule) -> TemperingSchedule:
    """A schedule from its name (defaults) or a ready object; unknown names raise SMCConfigError."""
    if isinstance(spec, str):
        if spec == "adaptive":
            return AdaptiveTempering()
        if spec == "exponential":
            return ExponentialTempering()
        if spec == "polynomial":
            return PolynomialTempering()
        if spec == "predictive":
            return PredictiveTempering()
        raise SMCConfigError(
            format_choice_error("tempering", spec, TEMPERING_NAMES)
            + ", or pass an object with a next_lambda(step, num_steps, current, "
            "scaled_reward, log_w) method"
        )
    if isinstance(spec, TemperingSchedule):
        return spec
    raise SMCConfigError(
        f"tempering={spec!r} is neither a name ({', '.join(TEMPERING_NAMES)}) nor an object "
        "with a next_lambda(step, num_steps, current, scaled_reward, log_w) method"
    )
