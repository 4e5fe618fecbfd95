r"""Pre-screening: pick the `q` of `M` particles worth an oracle query.

`S = argmax_{S ⊂ C', |S| = q} α(S | X_pending)`, greedily (``optimize_acqf_discrete``).

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
from typing import Any, Literal

import gpytorch
import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.acquisition.objective import GenericMCObjective
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from optimizer.errors import ConfigError, SurrogateError, format_choice_error
from optimizer.surrogate.dedup import Exclusion, find_duplicates
from optimizer.surrogate.gp import Surrogate

ACQUISITIONS = ("qlognei", "qucb")


@dataclass(frozen=True)
class ScreeningResult:
    """The outcome of ``screen`` over `M` candidates (every field is per candidate or per pick).

    Attributes:
        selected: `q'`-dim long Tensor of candidate indices, in pick order (`q' ≤ q`).
        selected_values: `q'`-dim Tensor, each pick's acquisition value given the earlier picks.
        acq_values: `M`-dim Tensor, `α({x_i} | X_pending)` for every candidate (excluded too).
        mean: `M x m`-dim Tensor, posterior mean per objective (raw sign).
        std: `M x m`-dim Tensor, posterior (latent) std per objective.
        excluded: `M`-dim bool Tensor, True where a candidate was ineligible.
        exclusions: why each excluded candidate was dropped.
        acquisition: the acquisition used; seed: its quasi-MC seed.
        note: empty, or why fewer than `q` were selected.
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

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able row per candidate for the database log (selected or not)."""
        why = {e.index: e for e in self.exclusions}
        rank = {int(i): r for r, i in enumerate(self.selected.tolist())}
        rows = []
        for i in range(self.acq_values.shape[0]):
            e = why.get(i)
            rows.append({
                "index": i, "acq_value": float(self.acq_values[i]),
                "mean": self.mean[i].tolist(), "std": self.std[i].tolist(),
                "selected": i in rank, "pick_rank": rank.get(i),
                "excluded_reason": None if e is None else e.reason,
                "duplicate_of": None if e is None else e.other_index,
                "duplicate_distance": None if e is None else e.distance,
            })
        return rows


def _acqf(sur: Surrogate, kind: str, objective: GenericMCObjective, beta: float,
          sampler: SobolQMCNormalSampler, Z_pending: Tensor | None):
    if kind == "qlognei":
        return qLogNoisyExpectedImprovement(
            model=sur.model, X_baseline=sur.train_Z[sur.cond_idx], sampler=sampler,
            objective=objective, X_pending=Z_pending, prune_baseline=True)
    return qUpperConfidenceBound(model=sur.model, beta=beta ** 2, sampler=sampler,
                                 objective=objective, X_pending=Z_pending)


def screen(
    sur: Surrogate, candidates: Tensor, q: int, *, pending: Tensor | None = None,
    observed: Tensor | None = None, acquisition: Literal["qlognei", "qucb"] = "qlognei",
    beta: float | None = None, weights: tuple[float, ...] | None = None,
    scalarization: str | None = None, maximize: bool | tuple[bool, ...] | None = None,
    dedup_tol: float = 1e-5, generator: torch.Generator | None = None, seed: int | None = None,
    num_mc_samples: int | None = None, max_batch_size: int = 1024,
    max_choices: int | None | Literal["auto"] = "auto",
) -> ScreeningResult:
    """Select up to ``q`` of `M` candidate designs for the oracle (see module docstring).

    Args:
        sur: fitted surrogate.
        candidates: `M x *design_shape`-dim Tensor (the round's particles).
        q: oracle batch size.
        pending: `k x *design_shape` designs queried but without result (in flight).
        observed: designs already queried (e.g. failed queries; reason "queried"); the surrogate's
            training designs are always excluded too.
        acquisition: ``"qlognei"`` (default) or ``"qucb"``.
        beta: `β` of qUCB (default ``config.beta``); weights / scalarization / maximize
            override the config for several objectives.
        dedup_tol: RMS tolerance of duplicate detection (``dedup.py``).
        generator / seed: the quasi-MC seed (seed wins; else drawn from generator; else
            ``config.seed``).
        num_mc_samples: quasi-MC samples (default ``config.num_mc_samples``).
        max_batch_size: candidates per acquisition evaluation.
        max_choices: greedy selection runs over this many eligible candidates of highest solo
            value (``"auto"``: `max(256, 32 q)`; None: all eligible).

    >>> res = screen(sur, particles, q=4, pending=in_flight)
    >>> particles[res.selected]                  # to the oracle
    >>> res.records()                            # log every candidate
    """
    if acquisition not in ACQUISITIONS:
        raise ConfigError(format_choice_error("acquisition", acquisition, ACQUISITIONS))
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
    if seed is None:
        seed = (int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
                if generator is not None else sur.config.seed)
    M = candidates.shape[0]
    exclusions = find_duplicates(
        candidates, [("observed", sur.train_X), ("queried", observed), ("pending", pending)],
        tol=dedup_tol)
    excluded = torch.zeros(M, dtype=torch.bool)
    for e in exclusions:
        excluded[e.index] = True

    g = sur.scalarization(weights=weights, scalarization=scalarization, maximize=maximize)

    def scalarized(samples: Tensor, X: Tensor | None = None) -> Tensor:
        return g(samples)

    objective = GenericMCObjective(scalarized)
    sampler = SobolQMCNormalSampler(
        sample_shape=torch.Size([num_mc_samples or sur.config.num_mc_samples]), seed=seed)
    Z = sur.features(candidates).detach()
    Z_pending = (sur.features(pending).detach()
                 if pending is not None and pending.shape[0] > 0 else None)
    with gpytorch.settings.max_cholesky_size(sur.config.cholesky_max_size), torch.no_grad():
        acqf = _acqf(sur, acquisition, objective,
                     sur.config.beta if beta is None else float(beta), sampler, Z_pending)
        acq_values = torch.cat([acqf(Zc.unsqueeze(-2)) for Zc in Z.split(max_batch_size)])
        mean, std = sur.posterior_mean_std(candidates)
        eligible = torch.nonzero(~excluded).flatten()
        if max_choices == "auto":
            max_choices = max(256, 32 * q)
        if max_choices is not None and eligible.numel() > max_choices:
            order = torch.argsort(acq_values[eligible].cpu(), descending=True, stable=True)
            top = eligible[order[:max_choices]]
        else:
            top = eligible
        q_eff = min(q, int(eligible.numel()))
        note = "" if q_eff == q else (
            f"only {q_eff} of q={q} selected: {M - eligible.numel()} of {M} candidates are "
            "duplicates of observed, pending or other candidates (see exclusions)")
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
                           acquisition=acquisition, seed=int(seed), note=note)


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
