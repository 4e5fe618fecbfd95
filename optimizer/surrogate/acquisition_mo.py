r"""Screening by hypervolume improvement: qLogNEHVI over the finite candidate set.

`S = argmax_{S ⊂ C', |S| = q} E[log HVI(f(S) | f(X_base ∪ X_pending); r)]`, greedily, with
`HVI(Y | P; r) = HV(P ∪ Y; r) − HV(P; r)` on signed outcomes (``pareto.py``) and `r` the
reference point (given per objective, else inferred from the observations' front).

The same fast path as single-objective screening (``screening.py``), per objective instead of
scalarized:

1. duplicates excluded by the caller (observed, queried, pending, earlier candidates);
2. cheap score: every candidate's posterior mean and std per objective; per ancestor family and
   then overall, keep candidates by Pareto layers of (signed means, stds) — `2m` columns, all
   "higher is better" for a single candidate's expected hypervolume improvement (it rises with
   each objective's mean and, at a fixed mean, with its spread), so the layers keep the
   candidates that can extend the front (ties in the last layer: the scalarized UCB);
3. the baseline: at most ``screen_max_baseline`` observations from the first Pareto layers of
   the signed observed outcomes (BoTorch then prunes those unlikely to be on the front);
4. BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` on the exact joint posterior of
   {kept candidates, baseline, pending} (``finite.FiniteSetModel``), pending designs as
   ``X_pending``, sequential greedy with the family margin of ``screening._greedy``.

Outcome constraints (``config.num_constraints`` trailing outputs, ``constraints.py``): BoTorch's
``constraints`` make it the expected *feasible* hypervolume improvement (per posterior sample
only the feasible baseline points form the front, a candidate counts weighted by its smooth
feasibility); the reference point is inferred from the feasible observations' front; the
baseline's layers take feasible observations first; the prefilter's layers add log PoF as a
maximized column (feasible HVI rises with it) and the last layer's tiebreak is weighted by it;
a saturated greedy step picks by single-candidate value (``screening._greedy``).
"""
from __future__ import annotations

import math
from typing import Any

import gpytorch
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from optimizer.surrogate.constraints import (feasible_first, feasible_rows, num_objective_columns,
                                             surrogate_log_pof)
from optimizer.surrogate.dedup import Exclusion
from optimizer.surrogate.gp import Surrogate
from optimizer.surrogate.pareto import feasible_reference, pareto_mask
from optimizer.surrogate.scalarize import Scalarization


def layers_keep(points: Tensor, tiebreak: Tensor, size: int, among: Tensor | None = None) -> Tensor:
    """Mask of the ``size`` points (of those in ``among``) on the lowest non-dominated layers
    of ``points`` (`b x k`, every column maximized); the last layer's ties by ``tiebreak``."""
    b = points.shape[0]
    idx = torch.arange(b) if among is None else torch.nonzero(among).flatten()
    keep = torch.zeros(b, dtype=torch.bool)
    left = idx
    while left.numel() and int(keep.sum()) < size:
        front = torch.as_tensor(pareto_mask(points[left]))
        if not bool(front.any()):  # only NaN rows left
            front = torch.ones_like(front)
        layer = left[front]
        room = size - int(keep.sum())
        if layer.numel() > room:
            layer = layer[torch.argsort(tiebreak[layer], descending=True, stable=True)[:room]]
        keep[layer] = True
        left = left[~front]
    return keep


def screening_reference(sur: Surrogate, signs: Tensor) -> Tensor:
    """The reference point in the signed orientation: ``config.reference_point`` (raw units)
    where given, the rest inferred from the front of the signed observations, the feasible ones
    when the surrogate has constraint columns (all when none is feasible yet)."""
    m = num_objective_columns(sur)
    given = sur.config.reference_point
    if given is not None and len(given) != m:
        from optimizer.errors import ConfigError

        raise ConfigError(f"reference_point={given} has {len(given)} entries for "
                          f"{m} objectives; give one per objective (None: inferred)")
    signed = None if given is None else [None if r is None else float(r) * float(s)
                                         for r, s in zip(given, signs.tolist(), strict=True)]
    V = sur.train_Y[:, :m].to(torch.float64) * signs.to(torch.float64)
    return feasible_reference(V, feasible_rows(sur), signed)


def screen_hvi(sur: Surrogate, Z: Tensor, Z_pending: Tensor | None, q_eff: int, g: Scalarization,
               sampler: SobolQMCNormalSampler, beta: float, excluded: Tensor,
               exclusions: list[Exclusion], families: Tensor | None, max_choices: int | None,
               max_batch_size: int, seed: int, note: str,
               con_kw: dict[str, Any] | None = None) -> Any:
    """qLogNEHVI screening of the candidates' features ``Z`` (module docstring); returns a
    ``screening.ScreeningResult`` (``acq_values``: each scored candidate's log-HVI alone).
    ``con_kw``: BoTorch's ``constraints`` and ``eta`` for the surrogate's constraint columns
    (``constraints.mc_objective``)."""
    from optimizer.surrogate.screening import (ScreeningResult, _count_families, _greedy,
                                               finite_acquisition_model, prefilter_conditioning,
                                               score_singles)

    cfg = sur.config
    M = Z.shape[0]
    m = num_objective_columns(sur)  # constraint columns (if any) follow the objectives
    signs = g.signs.to(sur.dtype)
    V_obs = sur.train_Y[:, :m].to(sur.dtype) * signs
    ref = screening_reference(sur, signs).to(sur.dtype)
    raw_score = g(sur.train_Y.to(sur.dtype))
    observed_score = feasible_first(raw_score, sur)
    spread = float(raw_score.std()) if raw_score.numel() > 1 else 1.0
    spread = spread if math.isfinite(spread) and spread > 0 else 1.0
    feasible = feasible_rows(sur)
    n_cond = sur.cond_idx.numel()
    local = cfg.screen_local_size
    exact_max = cfg.screen_exact_max_observations
    approximate = exact_max is not None and n_cond > exact_max
    eligible = ~excluded
    with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size), torch.no_grad():
        rows, cond = prefilter_conditioning(sur, Z, eligible, Z_pending, local, observed_score)
        mean, var = cond.mean_var(Z)
        std = var.sqrt()
        V = mean[:, :m] * signs
        tie = g.apply_signed(V + beta * std[:, :m])
        cols = torch.cat([V, std[:, :m]], dim=-1)
        lp = surrogate_log_pof(sur, mean, var)  # None without constraints
        if lp is not None:  # feasible HVI rises with PoF too: a third kind of axis
            cols = torch.cat([cols, lp.unsqueeze(-1)], dim=-1)
            tie = tie + lp * spread
        keep = eligible.clone()
        target = cfg.screen_prefilter_size or int(keep.sum())
        if families is not None and bool(keep.any()):
            n_fam = int(torch.unique(families[keep]).numel())
            per = max(cfg.screen_family_keep, -(-target // n_fam))
            fam_keep = torch.zeros(M, dtype=torch.bool)
            for f in torch.unique(families[keep]).tolist():
                fam_keep |= layers_keep(cols, tie, per, among=keep & (families == f))
            keep = fam_keep
        keep = layers_keep(cols, tie, target, among=keep)
        cand = torch.nonzero(keep).flatten()
        size = cfg.screen_max_baseline or V_obs.shape[0]
        base = layers_keep(V_obs, observed_score, size, among=feasible)  # feasible ones first
        if int(base.sum()) < size and not bool(feasible.all()):
            base |= layers_keep(V_obs, observed_score, size - int(base.sum()), among=~feasible)
        base = torch.nonzero(base).flatten()
        model, rows, (choices, base_x, pend_x) = finite_acquisition_model(
            sur, Z, cand, base, Z_pending, cond, rows, observed_score,
            local=local or n_cond, approximate=approximate)
        K, B = cand.numel(), base.numel()
        objective = WeightedMCMultiOutputObjective(weights=signs, outcomes=list(range(m)))
        kw = con_kw or {}

        def make(extra: Tensor | None) -> Any:
            pend = torch.cat([pend_x] + ([extra] if extra is not None else []))
            return qLogNoisyExpectedHypervolumeImprovement(
                model=model, ref_point=ref, X_baseline=base_x, sampler=sampler,
                objective=objective, X_pending=pend if pend.shape[0] else None,
                prune_baseline=True, cache_root=False, **kw)

        solo, acq_values, top, fam = score_singles(make, choices, cand, M, max_choices,
                                                   max_batch_size, families)
        # constrained: once the greedy gains are saturated, the largest is an infeasible
        # design's (as for constrained qLogNEI, ``screening._greedy``)
        saturated = solo[top] if lp is not None else None
        picks, vals = _greedy(make, choices[top], fam, min(q_eff, K), cfg.screen_family_margin,
                              True, max_batch_size, saturated)
        sel = cand[top[picks]]
    return ScreeningResult(
        selected=sel, selected_values=vals, acq_values=acq_values, mean=mean, std=std,
        excluded=excluded, exclusions=tuple(exclusions), acquisition="qlognehvi", seed=seed,
        note=note, batch_families=_count_families(families, sel), num_scored=K, num_baseline=B,
        conditioned_on=int(rows.numel()), approximate=approximate)
