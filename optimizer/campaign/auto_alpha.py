"""``[sampler] alpha = "auto"``: α per round from a KL budget and the over-optimization brake.

The round's target is `π_α ∝ p_pre · exp(r̂/α)` (times `PoF` with outcome constraints: an
α-free factor, counted in the KL too); the smaller α, the further `π_α` moves from the
prior. `KL(π_α‖p_pre)` falls monotonically as α rises (its derivative in `1/α` is
`(1/α)·Var_{π_α}(r̂) ≥ 0`), so a budget of ``kl_budget`` nats per round fixes one α:

1. **KL(α), cheaply.** The campaign's plain-prior round (round 0) stored weighted samples of
   `p_pre` (its candidates); the fitted surrogate's reward `r̂` is evaluated at (up to
   ``MAX_PRIOR_SAMPLES`` of) them, and `KL(α)` is estimated by self-normalized importance weights
   `exp(r̂(x_i)/α)` (:func:`optimizer.campaign.round_diagnostics.kl_of_tilt`): no sampling, one
   reward evaluation of a few hundred designs per round.
2. **Solve.** Bisection on `log α` within ``[alpha_min, alpha_max]`` for the α whose estimate
   equals the budget; the bounds win when the budget cannot be met inside them. `N` prior samples
   resolve at most `log N` nats (a tilt onto one sample), so a budget above that gives
   ``alpha_min`` (said in the reason).
3. **Brake.** The surrogate-vs-oracle gap of the last completed tilted round — mean of
   (prediction − result) over its results, in units of the standard deviation of all results so
   far — above ``overopt_gap`` means the sampler is exploiting surrogate errors: α is multiplied
   by ``overopt_factor`` (a weaker tilt; still within the bounds), with a WARNING.

No plain-prior round stored (a warm-started campaign tilts from round 0): α = ``alpha_max``, the
gentlest allowed tilt, with the reason recorded.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optimizer.campaign.round_diagnostics import kl_of_tilt

log = logging.getLogger(__name__)

#: Prior samples the KL(α) estimate uses at most (a deterministic subsample beyond).
MAX_PRIOR_SAMPLES = 4096
#: Bisection steps on log α (the bracket shrinks 2^-60: far below any useful precision).
BISECTION_STEPS = 60


@dataclass(frozen=True)
class PriorSample:
    """Weighted samples of the plain prior: a plain-prior round's candidates.

    Attributes:
        designs: `N x *design_shape`; log_weights: `N` (None: equal weights).
        round_index: the round they come from.
    """

    designs: np.ndarray
    log_weights: np.ndarray | None
    round_index: int


@dataclass(frozen=True)
class OveroptGap:
    """The surrogate-vs-oracle gap of the last completed tilted round.

    Attributes:
        round_index: that round; gap: mean(prediction − result) of its results (maximization
            orientation: > 0 = the surrogate promised more); scale: std of all results so far.
    """

    round_index: int
    gap: float
    scale: float

    @property
    def relative(self) -> float:
        return self.gap / self.scale if self.scale > 0 else (math.inf if self.gap > 0 else 0.0)


@dataclass(frozen=True)
class AutoAlphaInputs:
    """What the driver reads for ``alpha = "auto"`` before a round (:func:`read_auto_inputs`)."""

    prior: PriorSample | None
    gap: OveroptGap | None


@dataclass(frozen=True)
class AlphaChoice:
    """The α of one round and why (stored in the round's ``summary["alpha_auto"]``).

    Attributes:
        alpha: the round's α; budget_alpha: the α the KL budget alone gave.
        kl: estimated `KL(π_α‖p_pre)` at ``alpha`` on the prior sample (None without one).
        kl_budget: the budget; brake: whether the over-optimization brake raised α.
        gap: the relative gap the brake looked at (None: no completed tilted round yet).
        prior_samples: how many prior samples the estimate used; reason: one line.
    """

    alpha: float
    budget_alpha: float
    kl: float | None
    kl_budget: float
    brake: bool
    gap: float | None
    prior_samples: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def solve_alpha(rewards: np.ndarray, budget: float, lo: float, hi: float,
                log_weights: np.ndarray | None = None,
                extra: np.ndarray | None = None) -> tuple[float, float, str]:
    """The α in ``[lo, hi]`` whose estimated KL (:func:`kl_of_tilt`, with the α-free log factor
    ``extra``: the constraints' log PoF) meets ``budget``.

    Returns:
        ``(alpha, kl at alpha, why)``; ``why`` is "budget met", or names the bound that won.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(r) == 0 or float(np.ptp(r)) == 0.0:
        kl = 0.0 if len(r) == 0 or extra is None else kl_of_tilt(r, hi, log_weights, extra)
        return hi, kl, "the reward is constant on the prior sample (α does not change KL): alpha_max"
    kl_hi = kl_of_tilt(r, hi, log_weights, extra)
    if kl_hi >= budget:
        why = f"even alpha_max = {hi:g} gives KL {kl_hi:.3g} ≥ the budget"
        if extra is not None:
            alone = kl_of_tilt(r, math.inf, log_weights, extra)
            why += f" (the constraints' PoF factor alone gives {alone:.3g})"
        return hi, kl_hi, why
    kl_lo = kl_of_tilt(r, lo, log_weights, extra)
    if kl_lo <= budget:
        why = f"alpha_min = {lo:g} gives only KL {kl_lo:.3g} ≤ the budget"
        if budget >= math.log(len(r)):
            why += f" ({len(r)} prior samples resolve at most log N = {math.log(len(r)):.3g} nats)"
        return lo, kl_lo, why
    a, b = math.log(lo), math.log(hi)  # KL(e^a) > budget > KL(e^b)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (a + b)
        if kl_of_tilt(r, math.exp(mid), log_weights, extra) > budget:
            a = mid
        else:
            b = mid
    alpha = math.exp(b)  # the side that keeps KL within the budget
    return alpha, kl_of_tilt(r, alpha, log_weights, extra), "budget met"


def choose_alpha(reward: Any, sampler: Any, prior: PriorSample | None, gap: OveroptGap | None,
                 *, campaign: str = "", feasibility: Any = None) -> AlphaChoice:
    """The α of a tilted round under ``alpha = "auto"`` (see the module docstring).

    Args:
        reward: the round's SMC reward `r̂` (a callable `B x *design_shape` Tensor → `B`).
        sampler: the campaign's ``SamplerConfig`` (``kl_budget``, ``alpha_min``, ``alpha_max``,
            ``overopt_gap``, ``overopt_factor``).
        prior: the plain-prior sample, or None when the campaign has none.
        gap: the last completed tilted round's gap, or None.
        campaign: its name, for the log lines.
        feasibility: with outcome constraints, `log PoF` (a callable like ``reward``): the target
            is `p·exp(r̂/α)·PoF`, whose KL from the prior counts the PoF factor too.
    """
    lo, hi, budget = float(sampler.alpha_min), float(sampler.alpha_max), float(sampler.kl_budget)
    n = 0
    kl: float | None
    r = lw = extra = None
    if prior is None or len(prior.designs) == 0:
        alpha, kl, why = hi, None, "no plain-prior round stored to estimate KL on: alpha_max"
    else:
        r, lw = _rewards_on(reward, prior)
        extra = None if feasibility is None else _rewards_on(feasibility, prior)[0]
        n = len(r)
        alpha, kl, why = solve_alpha(r, budget, lo, hi, lw, extra)
        why = f"{why} (KL estimated on {n} round-{prior.round_index} prior samples)"
    budget_alpha = alpha
    rel = gap.relative if gap is not None else None
    brake = rel is not None and rel > float(sampler.overopt_gap)
    if brake:
        alpha = min(hi, alpha * float(sampler.overopt_factor))
        assert gap is not None
        why += (f"; over-optimization brake: round {gap.round_index}'s surrogate-vs-oracle gap is "
                f"{rel:.3g} result std (> {sampler.overopt_gap:g}), α x {sampler.overopt_factor:g}")
        if r is not None:
            kl = kl_of_tilt(r, alpha, lw, extra)
        log.warning("campaign %s: over-optimization brake: the surrogate over-estimated round %d's "
                    "results by %.3g result std (> %g); α raised from %.4g to %.4g",
                    campaign, gap.round_index, rel, sampler.overopt_gap, budget_alpha, alpha)
    log.info("campaign %s: alpha auto: α = %.4g, estimated KL %s nats (budget %g): %s", campaign,
             alpha, "n/a" if kl is None else f"{kl:.3g}", budget, why)
    return AlphaChoice(alpha=float(alpha), budget_alpha=float(budget_alpha),
                       kl=None if kl is None else float(kl), kl_budget=budget, brake=bool(brake),
                       gap=None if rel is None or not math.isfinite(rel) else float(rel),
                       prior_samples=n, reason=why)


def _rewards_on(reward: Any, prior: PriorSample) -> tuple[np.ndarray, np.ndarray | None]:
    """``reward`` (`r̂`, or `log PoF`) at (a deterministic subsample of) the prior sample, as
    float64, with its weights."""
    import torch

    designs, lw = prior.designs, prior.log_weights
    if len(designs) > MAX_PRIOR_SAMPLES:  # evenly spaced: deterministic, covers every chunk
        idx = np.linspace(0, len(designs) - 1, MAX_PRIOR_SAMPLES).round().astype(np.int64)
        designs = designs[idx]
        lw = None if lw is None else lw[idx]
    with torch.no_grad():
        r = reward(torch.as_tensor(np.asarray(designs), dtype=torch.float32))
    return r.detach().cpu().double().numpy().reshape(-1), lw


def last_round_gap(rounds: Sequence[tuple[int, bool, Sequence[tuple[float, float | None]]]]
                   ) -> OveroptGap | None:
    """The gap of the last completed tilted round that has results with predictions.

    Args:
        rounds: ``(index, complete and tilted, [(result, prediction or None), ...])`` in round
            order, both in maximization orientation; the scale is the std of every result.
    """
    values = [v for _, _, pairs in rounds for v, _ in pairs]
    scale = float(np.std(values)) if len(values) > 1 else 0.0
    for index, eligible, pairs in reversed(list(rounds)):
        diffs = [m - v for v, m in pairs if m is not None]
        if eligible and diffs:
            return OveroptGap(round_index=int(index), gap=float(np.mean(diffs)), scale=scale)
    return None


def read_auto_inputs(storage: Any, name: str, rounds: Sequence[Any], config: Any) -> AutoAlphaInputs:
    """The prior sample (the latest plain-prior round's candidates) and the last completed
    tilted round's gap, read from ``storage`` for campaign ``name``.

    Args:
        rounds: the campaign's ``RoundRecord`` list (``Storage.list_rounds``).
        config: the ``CampaignConfig`` (the primary objective's direction orients the gap).
    """
    plain = [r for r in rounds if not (r.summary or {}).get("tilted")]
    prior = None
    if plain:
        cands = storage.list_candidates(name, plain[-1].index)
        if cands:
            lw = [c.log_weight for c in cands]
            prior = PriorSample(
                designs=np.stack([np.asarray(c.design, dtype=np.float64) for c in cands]),
                log_weights=(None if any(w is None or not math.isfinite(w) for w in lw)
                             else np.asarray(lw, dtype=np.float64)),
                round_index=plain[-1].index)
    obj = config.primary_objective
    sign = 1.0 if obj.direction == "maximize" else -1.0
    pairs: dict[int, list[tuple[float, float | None]]] = {}
    for p in storage.query_points(name):
        v = (p.values or {}).get(obj.name) if p.status == "succeeded" else None
        if v is not None and math.isfinite(v):
            pairs.setdefault(p.round_index, []).append((sign * float(v), p.surrogate_mean))
    eligible = [(r.index, r.status == "complete" and bool((r.summary or {}).get("tilted")),
                 pairs.get(r.index, [])) for r in rounds]
    return AutoAlphaInputs(prior=prior, gap=last_round_gap(eligible))
