r"""Pre-screening: pick the `q` of `M` particles worth an oracle query.

`S = argmax_{S ⊂ C', |S| = q} α(S | X_pending)`, greedily.

Fast path (``method="fast"``, default; ``finite.py``, ``prefilter.py``):

1. exclude duplicates as below;
2. cheap score: posterior mean and std of every candidate (one triangular solve), scalarized,
   from the GP conditioned on the surrogate's observations, or when there are more than
   ``config.screen_local_size`` on a data-chosen local subset of that size around the candidates
   (``finite.local_rows``); per ancestor family (``families``) keep the best
   `max(screen_family_keep, ⌈P / F⌉)` by Pareto layers of (mean, std) (`P` =
   ``screen_prefilter_size``, `F` families), then the `P` best overall the same way (the
   layers hold the single-candidate EI maximizer whatever the incumbent, ``prefilter.py``);
3. qLogNEI's baseline: at most ``screen_max_baseline`` observations that can plausibly be the
   best (below); qLogNEI / qUCB run on the exact joint posterior of the finite set
   {kept candidates, baseline, pending} (``FiniteSetModel``), so a candidate costs `O(B + q)`;
   that posterior conditions on all the surrogate's observations, or above
   ``config.screen_exact_max_observations`` on a local subset (``screen_local_size``) chosen
   around the kept candidates, baseline and pending designs;
4. sequential greedy: each pick becomes pending for the next; a candidate whose family already
   has more picks than the least-picked family left is taken only when its acquisition beats
   that family's best by ``screen_family_margin``: for qLogNEI in expected improvement (given
   the earlier picks) as a fraction of the first pick's (0.2: the same family must promise a
   fifth of the best candidate's improvement more; differences among negligible improvements
   never count), for qUCB in units of the scalarized observed outcomes' std.

Outcome constraints (``config.num_constraints`` trailing outputs; ``constraints.py``): qLogNEI
gets BoTorch's ``constraints`` (smooth feasibility weight on posterior samples, the best
feasible baseline point as incumbent), qUCB the feasibility-weighted objective
`(g + M) · Π sigmoid(−c_j/η) − M`; the fast prefilter keeps Pareto layers of (mean, std, log
PoF), ranks infeasible observations below feasible ones for the baseline, and a saturated
greedy step picks by single-candidate value (``_greedy``).

Why a bounded baseline is sound for NEI: qNEI's incumbent is `max_{x∈baseline} f(x)` sampled
jointly with the candidates; an observation contributes only in samples where it is that max.
The baseline keeps the observations whose upper bound `μ + 3σ` reaches the largest lower bound
`max (μ − 3σ)`, highest upper bound first (from the ``4 B`` best by observed outcome): the others
are the max with probability below ~1e-3 each, and BoTorch's own ``prune_inferior_points`` would
then drop most of them anyway, after paying a joint posterior over all `n`.

Reference path (``method="botorch"``, the behaviour before the fast path; ``families`` ignored):

1. exclude candidates within ``dedup_tol`` of a training design, an ``observed`` (queried) design,
   a pending (in-flight) design or an earlier candidate (``dedup.find_duplicates``; the reason is
   stored with each candidate);
2. build the acquisition `α` on features `φ(x)`: ``"qlognei"`` (qLogNoisyExpectedImprovement over
   the observed designs, default) or ``"qucb"`` (qUpperConfidenceBound with BoTorch
   `β_bt = β²`, so one candidate scores `μ + β σ`), both under the scalarization `g`, with the
   pending designs as ``X_pending`` and a seeded quasi-MC sampler;
3. score every candidate alone, `α({x} | X_pending)`, so each one's value can be logged;
4. select `q` from the eligible ones with ``optimize_acqf_discrete`` (sequential greedy: each
   pick becomes pending for the next), over the ``max_choices`` eligible candidates of highest
   solo value: a candidate's gain given earlier picks is at most its solo value (the improvement
   of a max is at most the improvement of the added term), so low-value candidates cannot win
   a later greedy step in practice, and the `q` greedy passes stay cheap at `M = 10^4`.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from collections.abc import Callable
from typing import Any, Literal, cast

import gpytorch
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.acquisition.objective import GenericMCObjective
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from optimizer.errors import ConfigError, SurrogateError, format_choice_error
from optimizer.surrogate import constraints as con
from optimizer.surrogate.dedup import Exclusion, find_duplicates
from optimizer.surrogate.finite import Conditioning, local_rows
from optimizer.surrogate.gp import Surrogate
from optimizer.surrogate.prefilter import family_keep, feasibility_axis, prefilter_keep
from optimizer.surrogate.scalarize import Scalarization

ACQUISITIONS = ("qlognei", "qucb", "qlognehvi")
METHODS = ("fast", "botorch")
#: baseline observations pass when `μ + Z σ ≥ max(μ − Z σ)` (NEI soundness, module docstring)
BASELINE_Z = 3.0
#: constrained qLogNEI's greedy: a gain below this fraction of the first pick's is saturated
SATURATED = 1e-3


@dataclass(frozen=True)
class ScreeningResult:
    """The outcome of ``screen`` over `M` candidates (every field is per candidate or per pick).

    Attributes:
        selected: `q'`-dim long Tensor of candidate indices, in pick order (`q' ≤ q`).
        selected_values: `q'`-dim Tensor, each pick's acquisition value given the earlier picks.
        acq_values: `M`-dim Tensor, `α({x_i} | X_pending)` for every scored candidate (NaN for
            one the fast path's prefilter left out, or an excluded one there).
        mean: `M x m`-dim Tensor, posterior mean per objective (raw sign).
        std: `M x m`-dim Tensor, posterior (latent) std per objective.
        excluded: `M`-dim bool Tensor, True where a candidate was ineligible.
        exclusions: why each excluded candidate was dropped.
        acquisition: the acquisition used; seed: its quasi-MC seed.
        note: empty, or why fewer than `q` were selected.
        batch_families: distinct ancestor families among the picks (None without ``families``).
        num_scored: candidates given to the acquisition; num_baseline: qLogNEI's baseline size
            before BoTorch's pruning (0 for qUCB); conditioned_on: observations the posterior
            used for the acquisition; approximate: True when that was a local subset
            (``finite.local_rows``).
    """

    selected: Tensor
    selected_values: Tensor
    acq_values: Tensor
    mean: Tensor
    std: Tensor
    excluded: Tensor
    exclusions: tuple[Exclusion, ...]
    acquisition: str
    seed: int
    note: str = ""
    batch_families: int | None = None
    num_scored: int = 0
    num_baseline: int = 0
    conditioned_on: int = 0
    approximate: bool = False

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able row per candidate for the database log (selected or not)."""
        why = {e.index: e for e in self.exclusions}
        rank = {int(i): r for r, i in enumerate(self.selected.tolist())}
        rows = []
        for i in range(self.acq_values.shape[0]):
            e = why.get(i)
            v = float(self.acq_values[i])
            rows.append({
                "index": i, "acq_value": v if math.isfinite(v) else None,
                "mean": self.mean[i].tolist(), "std": self.std[i].tolist(),
                "selected": i in rank, "pick_rank": rank.get(i),
                "excluded_reason": None if e is None else e.reason,
                "duplicate_of": None if e is None else e.other_index,
                "duplicate_distance": None if e is None else e.distance,
            })
        return rows


def _acqf(sur: Surrogate, kind: str, objective: GenericMCObjective, beta: float,
          sampler: SobolQMCNormalSampler, Z_pending: Tensor | None, con_kw: dict[str, Any]):
    if kind == "qlognei":
        return qLogNoisyExpectedImprovement(
            model=sur.model, X_baseline=sur.train_Z[sur.cond_idx], sampler=sampler,
            objective=objective, X_pending=Z_pending, prune_baseline=True, **con_kw)
    return qUpperConfidenceBound(model=sur.model, beta=beta ** 2, sampler=sampler,
                                 objective=objective, X_pending=Z_pending)


def screen(
    sur: Surrogate, candidates: Tensor, q: int, *, pending: Tensor | None = None,
    observed: Tensor | None = None,
    acquisition: Literal["qlognei", "qucb", "qlognehvi"] = "qlognei",
    beta: float | None = None, weights: tuple[float, ...] | None = None,
    scalarization: str | None = None, maximize: bool | tuple[bool, ...] | None = None,
    dedup_tol: float = 1e-5, generator: torch.Generator | None = None, seed: int | None = None,
    num_mc_samples: int | None = None, max_batch_size: int = 1024,
    max_choices: int | None | Literal["auto"] = "auto", families: Tensor | None = None,
    method: Literal["fast", "botorch"] = "fast",
) -> ScreeningResult:
    """Select up to ``q`` of `M` candidate designs for the oracle (see module docstring).

    Args:
        sur: fitted surrogate.
        candidates: `M x *design_shape`-dim Tensor (the round's particles).
        q: oracle batch size.
        pending: `k x *design_shape` designs queried but without result (in flight).
        observed: designs already queried (e.g. failed queries; reason "queried"); the surrogate's
            training designs are always excluded too.
        acquisition: ``"qlognei"`` (default), ``"qucb"`` or ``"qlognehvi"`` (hypervolume
            improvement over all objectives, ``acquisition_mo.py``; always the fast path).
        beta: `β` of qUCB (default ``config.beta``); weights / scalarization / maximize
            override the config for several objectives.
        dedup_tol: RMS tolerance of duplicate detection (``dedup.py``).
        generator / seed: the quasi-MC seed (seed wins; else drawn from generator; else
            ``config.seed``).
        num_mc_samples: quasi-MC samples (default ``config.num_mc_samples``).
        max_batch_size: candidates per acquisition evaluation.
        max_choices: greedy selection runs over this many eligible candidates of highest solo
            value (``"auto"``: `max(256, 32 q)`; None: all eligible).
        families: `M` ints, the ancestor family of each candidate (e.g. one id per (chunk,
            founder)); the fast path thins and caps families (module docstring).
        method: ``"fast"`` (default) or ``"botorch"`` (the reference: all candidates, the full
            baseline, GPyTorch's posterior).

    >>> res = screen(sur, particles, q=4, pending=in_flight, families=fam)
    >>> particles[res.selected]                  # to the oracle
    >>> res.records()                            # log every candidate
    """
    if acquisition not in ACQUISITIONS:
        raise ConfigError(format_choice_error("acquisition", acquisition, ACQUISITIONS))
    if method not in METHODS:
        raise ConfigError(format_choice_error("method", method, METHODS))
    if not isinstance(q, int) or q < 1:
        raise ConfigError(f"q={q!r} must be a positive int (designs per oracle batch)")
    sur._check_designs(candidates, "candidates")
    if pending is not None and pending.shape[0] > 0:
        sur._check_designs(pending, "pending")
    if observed is not None and observed.shape[0] > 0:
        sur._check_designs(observed, "observed")
    if not torch.isfinite(candidates.reshape(candidates.shape[0], -1)).all():
        bad = torch.nonzero(~torch.isfinite(candidates.reshape(candidates.shape[0], -1)).all(1))
        raise SurrogateError(f"candidates rows {bad.flatten().tolist()[:10]} are not finite; drop "
                             "them before screening")
    M = candidates.shape[0]
    if families is not None:
        families = torch.as_tensor(families).reshape(-1).long()
        if families.shape[0] != M:
            raise ConfigError(f"families has {families.shape[0]} entries for {M} candidates; "
                              "pass one family id per candidate")
    if seed is None:
        seed = (int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
                if generator is not None else sur.config.seed)
    exclusions = find_duplicates(
        candidates, [("observed", sur.train_X), ("queried", observed), ("pending", pending)],
        tol=dedup_tol)
    excluded = torch.zeros(M, dtype=torch.bool)
    for e in exclusions:
        excluded[e.index] = True

    g = sur.scalarization(weights=weights, scalarization=scalarization, maximize=maximize)

    objective, con_kw = con.mc_objective(sur, g, acquisition)  # constraints: module docstring
    sampler = SobolQMCNormalSampler(
        sample_shape=torch.Size([num_mc_samples or sur.config.num_mc_samples]), seed=seed)
    Z = sur.features(candidates).detach()
    Z_pending = (sur.features(pending).detach()
                 if pending is not None and pending.shape[0] > 0 else None)
    beta_v = sur.config.beta if beta is None else float(beta)
    eligible = torch.nonzero(~excluded).flatten()
    q_eff = min(q, int(eligible.numel()))
    note = "" if q_eff == q else (
        f"only {q_eff} of q={q} selected: {M - eligible.numel()} of {M} candidates are "
        "duplicates of observed, pending or other candidates (see exclusions)")
    if max_choices == "auto":
        max_choices = max(256, 32 * q)
    if acquisition == "qlognehvi":
        from optimizer.surrogate.acquisition_mo import screen_hvi

        m_obj = con.num_objective_columns(sur)
        if m_obj < 2:
            raise ConfigError("acquisition='qlognehvi' needs a surrogate of at least two objectives, "
                              f"this one has {m_obj}; use 'qlognei'")
        return screen_hvi(sur, Z, Z_pending, q_eff, g, sampler, beta_v, excluded, exclusions,
                          families, max_choices, max_batch_size, int(seed), note, con_kw)
    if method == "fast":
        return _screen_fast(sur, Z, Z_pending, q_eff, g, objective, sampler, acquisition, beta_v,
                            excluded, exclusions, families, max_choices, max_batch_size,
                            int(seed), note, con_kw)
    with gpytorch.settings.max_cholesky_size(sur.config.cholesky_max_size), torch.no_grad():
        acqf = _acqf(sur, acquisition, objective, beta_v, sampler, Z_pending, con_kw)
        acq_values = torch.cat([acqf(Zc.unsqueeze(-2)) for Zc in Z.split(max_batch_size)])
        mean, std = sur.posterior_mean_std(candidates)
        if max_choices is not None and eligible.numel() > max_choices:
            order = torch.argsort(acq_values[eligible].cpu(), descending=True, stable=True)
            top = eligible[order[:max_choices]]
        else:
            top = eligible
        if q_eff == 0:
            sel, sel_vals = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=Z.dtype)
        else:
            choices = Z[top]
            picks, sel_vals = optimize_acqf_discrete(
                acqf, q=q_eff, choices=choices, max_batch_size=max_batch_size, unique=True)
            sel = _match_rows(picks.reshape(q_eff, -1), choices, top)
    return ScreeningResult(selected=sel, selected_values=sel_vals.reshape(-1).detach(),
                           acq_values=acq_values.detach(), mean=mean, std=std,
                           excluded=excluded, exclusions=tuple(exclusions),
                           acquisition=acquisition, seed=int(seed), note=note,
                           batch_families=_count_families(families, sel),
                           num_scored=int(eligible.numel()),
                           num_baseline=int(sur.cond_idx.numel()) if acquisition == "qlognei"
                           else 0, conditioned_on=int(sur.cond_idx.numel()))


def _count_families(families: Tensor | None, sel: Tensor) -> int | None:
    return None if families is None else int(torch.unique(families[sel]).numel())


def _scalar_mean_std(g: Scalarization, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """`g(μ)` and the std of `g` to first order, `√Σ_j (g(μ + σ_j e_j) − g(μ))²` (exact for a
    weighted sum; a local slope for Chebyshev)."""
    gm = g(mean)
    parts = []
    for j in range(mean.shape[-1]):
        bumped = mean.clone()
        bumped[:, j] += std[:, j]
        parts.append(g(bumped) - gm)
    return gm, torch.stack(parts, -1).pow(2).sum(-1).sqrt()


def _baseline_rows(sur: Surrogate, cond: Conditioning, g: Scalarization, observed_score: Tensor,
                   size: int) -> Tensor:
    """At most ``size`` observation rows that can plausibly be the best (module docstring)."""
    pool = torch.argsort(observed_score, descending=True, stable=True)[: 4 * size]
    mu, var = cond.mean_var(sur.train_Z[pool])
    gm, gs = _scalar_mean_std(g, mu, var.sqrt())
    upper, lower = gm + BASELINE_Z * gs, gm - BASELINE_Z * gs
    lp = con.surrogate_log_pof(sur, mu, var)
    if lp is not None and bool((lp > math.log(0.5)).any()):  # the incumbent is a feasible point
        lower = lower.masked_fill(lp <= math.log(0.5), -math.inf)
    ok = upper >= lower.max()
    cand = pool[ok][torch.argsort(upper[ok], descending=True, stable=True)]
    return cand[:size]


def _screen_fast(sur: Surrogate, Z: Tensor, Z_pending: Tensor | None, q_eff: int,
                 g: Scalarization, objective: GenericMCObjective,
                 sampler: SobolQMCNormalSampler, acquisition: str, beta: float,
                 excluded: Tensor, exclusions: list[Exclusion], families: Tensor | None,
                 max_choices: int | None, max_batch_size: int, seed: int,
                 note: str, con_kw: dict[str, Any]) -> ScreeningResult:
    cfg = sur.config
    M = Z.shape[0]
    eligible = ~excluded
    raw_score = g(sur.train_Y.to(sur.dtype))
    observed_score = con.feasible_first(raw_score, sur)
    # the objective's spread in its own units (the feasible-first shift would inflate it)
    spread = float(raw_score.std()) if raw_score.numel() > 1 else 1.0
    spread = spread if math.isfinite(spread) and spread > 0 else 1.0
    n_cond = sur.cond_idx.numel()
    local = cfg.screen_local_size
    exact_max = cfg.screen_exact_max_observations
    approximate = exact_max is not None and n_cond > exact_max
    with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size), torch.no_grad():
        rows, cond = prefilter_conditioning(sur, Z, eligible, Z_pending, local, observed_score)
        mean, var = cond.mean_var(Z)
        std = var.sqrt()
        gm, gs = _scalar_mean_std(g, mean, std)
        ucb = gm + beta * gs
        lp = con.surrogate_log_pof(sur, mean, var)  # None without constraints
        # the last layer's tiebreak: ucb, feasibility-weighted; the Pareto axis: log PoF, on
        # which far-infeasible designs tie (see PREFILTER_LOG_POF_FLOOR)
        tie, axis = feasibility_axis(ucb, lp, spread)
        keep = eligible.clone()
        if families is not None and bool(keep.any()):
            # at least screen_family_keep per family, more when few families would leave the
            # acquisition fewer candidates than the prefilter allows (a full collapse to one
            # family still offers screen_prefilter_size candidates)
            n_fam = int(torch.unique(families[keep]).numel())
            target = cfg.screen_prefilter_size or int(keep.sum())
            per = max(cfg.screen_family_keep, -(-target // n_fam))
            keep = family_keep(gm, gs, tie, families, per, among=keep, extra=axis)
        if cfg.screen_prefilter_size is not None:
            keep = prefilter_keep(torch.stack([gm, gs], -1), ucb, cfg.screen_prefilter_size,
                                  log_pof=lp, spread=spread, among=keep)
        cand = torch.nonzero(keep).flatten()
        base = (_baseline_rows(sur, cond, g, observed_score,
                               cfg.screen_max_baseline or sur.train_Z.shape[0])
                if acquisition == "qlognei" else torch.zeros(0, dtype=torch.long))
        model, rows, (choices, base_x, pend_x) = finite_acquisition_model(
            sur, Z, cand, base, Z_pending, cond, rows, observed_score,
            local=local or n_cond, approximate=approximate)
        K, B = cand.numel(), base.numel()

        pruned: list[Tensor] = []  # the baseline BoTorch's pruning kept, once

        def make(extra: Tensor | None) -> Any:
            pend = torch.cat([pend_x] + ([extra] if extra is not None else []))
            pend_arg = pend if pend.shape[0] else None
            if acquisition == "qlognei":
                # the pruning samples the baseline's posterior only (pending points play no
                # part), so the greedy steps reuse the first step's pruned baseline: a fifth of
                # a re-screening's time saved, the pipeline's wait for a fresh batch
                acqf = qLogNoisyExpectedImprovement(
                    model=model, X_baseline=pruned[0] if pruned else base_x, sampler=sampler,
                    objective=objective, X_pending=pend_arg, prune_baseline=not pruned,
                    cache_root=False, **con_kw)
                if not pruned:
                    pruned.append(cast(Tensor, acqf._X_baseline))  # before the pending
                return acqf
            return qUpperConfidenceBound(model=model, beta=beta ** 2, sampler=sampler,
                                         objective=objective, X_pending=pend_arg)

        solo, acq_values, top, fam = score_singles(make, choices, cand, M, max_choices,
                                                   max_batch_size, families)
        margin = cfg.screen_family_margin
        if acquisition == "qucb":
            margin *= spread
        saturated = solo[top] if lp is not None and acquisition == "qlognei" else None
        picks, vals = _greedy(make, choices[top], fam, min(q_eff, K), margin,
                              acquisition == "qlognei", max_batch_size, saturated)
        sel = cand[top[picks]]
    return ScreeningResult(
        selected=sel, selected_values=vals, acq_values=acq_values, mean=mean, std=std,
        excluded=excluded, exclusions=tuple(exclusions), acquisition=acquisition, seed=seed,
        note=note, batch_families=_count_families(families, sel), num_scored=K, num_baseline=B,
        conditioned_on=int(rows.numel()), approximate=approximate)


def prefilter_conditioning(sur: Surrogate, Z: Tensor, eligible: Tensor, Z_pending: Tensor | None,
                           local: int | None, score: Tensor) -> tuple[Tensor, Conditioning]:
    """The posterior of the cheap prefilter score: all conditioned rows, or above ``local`` of
    them a local subset around the eligible candidates and pending designs."""
    if local is not None and sur.cond_idx.numel() > local:
        queries = Z[eligible] if Z_pending is None else torch.cat([Z[eligible], Z_pending])
        rows = local_rows(sur, queries, local, score)
    else:
        rows = sur.cond_idx
    return rows, Conditioning.build(sur, rows)


def finite_acquisition_model(sur: Surrogate, Z: Tensor, cand: Tensor, base: Tensor,
                             Z_pending: Tensor | None, cond: Conditioning, rows: Tensor,
                             score: Tensor, *, local: int, approximate: bool
                             ) -> tuple[Any, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The exact joint posterior of the finite set the acquisition sees — candidates ``cand``,
    baseline observations ``base``, pending designs — as a small BoTorch model over index
    inputs; conditioned on all rows, or (``approximate``) on ``local`` rows chosen around that
    set. Returns the model, the rows it conditions on and the index inputs of candidates,
    baseline and pending points."""
    S = torch.cat([Z[cand], sur.train_Z[base]] + ([Z_pending] if Z_pending is not None else []))
    stage2 = local_rows(sur, S, local, score) if approximate else sur.cond_idx
    if not torch.equal(stage2, rows):
        rows = stage2
        cond = Conditioning.build(sur, rows)
    K, B = cand.numel(), base.numel()
    index = torch.arange(S.shape[0], dtype=Z.dtype).unsqueeze(-1)  # the model's inputs
    return cond.finite_model(S), rows, (index[:K], index[K:K + B], index[K + B:])


def score_singles(make: Callable[[Tensor | None], Any], choices: Tensor, cand: Tensor, m: int,
                  max_choices: int | None, max_batch_size: int, families: Tensor | None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Each kept candidate's own acquisition value (``solo``, `K`), the same spread over all `m`
    candidates (NaN for those not scored), the ``top`` rows the greedy batch picks among (the best
    ``max_choices`` by ``solo``) and their ancestor families."""
    dtype = choices.dtype
    k = choices.shape[0]
    first = make(None)
    solo = (torch.cat([first(c.unsqueeze(-2)) for c in choices.split(max_batch_size)])
            if k else torch.zeros(0, dtype=dtype))
    acq_values = torch.full((m,), float("nan"), dtype=dtype)
    acq_values[cand] = solo
    top = torch.arange(k)
    if max_choices is not None and k > max_choices:
        top = torch.argsort(solo, descending=True, stable=True)[:max_choices]
    fam = None if families is None else families[cand[top]]
    return solo, acq_values, top, fam


def _greedy(make: Callable[[Tensor | None], Any], choices: Tensor, fam: Tensor | None, q: int,
            margin: float, log_values: bool, max_batch_size: int,
            saturated: Tensor | bool | None = None) -> tuple[Tensor, Tensor]:
    """Sequential greedy over ``choices`` (`K x d`): each pick is pending for the next. With
    families ``fam``, a pick from a family with more picks than the least-picked family left
    needs a gain above that family's best by ``margin``: in units of the first pick's value
    when ``log_values`` (log-EI: `e^{v − v₁} − e^{v' − v₁}  > margin`), else in value units.
    ``saturated`` (constrained qLogNEI: each choice's solo value): once the best gain is below
    ``SATURATED`` of the first pick's, every gain is noise, and the largest is an infeasible
    design's (its improvement times a vanishing feasibility weight), so the pick is the free
    choice of highest solo value instead (``constraints.py``); ``True``: the solo values are
    the first step's (no extra pending point)."""
    K = choices.shape[0]
    free = torch.ones(K, dtype=torch.bool)
    count = None if fam is None else torch.zeros(K, dtype=torch.long)
    picks: list[int] = []
    vals: list[Tensor] = []
    for _ in range(q):
        acqf = make(choices[picks] if picks else None)
        v = torch.full((K,), -float("inf"), dtype=choices.dtype)
        v[free] = torch.cat([acqf(c.unsqueeze(-2)) for c in choices[free].split(max_batch_size)])
        best = int(torch.argmax(v))
        if saturated is True:
            saturated = v.clone()  # the first step: every choice scored alone
        if (isinstance(saturated, Tensor) and vals
                and bool(v[best] - vals[0] < math.log(SATURATED))):
            best = int(torch.argmax(saturated.masked_fill(~free, -float("inf"))))
        if fam is not None and count is not None:
            fewest = int(count[free].min())
            fresh = free & (count == fewest)
            alt = int(torch.argmax(v.masked_fill(~fresh, -float("inf"))))
            if log_values and vals:
                gain = torch.exp(v[best] - vals[0]) - torch.exp(v[alt] - vals[0])
            else:
                gain = v[best] - v[alt]
            if int(count[best]) > fewest and not bool(gain > margin):
                best = alt
        picks.append(best)
        vals.append(v[best])
        free[best] = False
        if fam is not None and count is not None:
            count[fam == fam[best]] += 1
    dtype = choices.dtype
    return (torch.tensor(picks, dtype=torch.long),
            torch.stack(vals) if vals else torch.zeros(0, dtype=dtype))


def _match_rows(picks: Tensor, choices: Tensor, eligible: Tensor) -> Tensor:
    """Map picked feature rows back to candidate indices (each index used once)."""
    used: set[int] = set()
    out = []
    for row in picks:
        hits = torch.nonzero((choices == row).all(dim=1)).flatten().tolist()
        i = next(h for h in hits if h not in used)
        used.add(i)
        out.append(int(eligible[i]))
    return torch.tensor(out, dtype=torch.long)
