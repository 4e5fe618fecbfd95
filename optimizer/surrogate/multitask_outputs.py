r"""Several outputs across fidelities: one multi-task GP per output, and the picks over them.

A campaign with cheap oracles models each output the picks need with its own multi-task GP
(``optimizer.surrogate.multitask``, task 0 = the expensive ``[oracle]``): `m` objectives
(signed, maximized: the primary only, or every objective of a Pareto campaign) followed by `k`
outcome-constraint slacks (feasible ⇔ `c_j ≤ 0`, ``config_constraints``). Each GP standardizes
its tasks on their own; the picks below undo the target task's standardization on the posterior
samples, so constraint thresholds, the reference point and scalarizations are in the
campaign's units. The models are independent (a ``ModelListGP`` of the target-task
posteriors):

* :meth:`MultiTaskOutputs.pick_cheap` — what a cheap oracle is sent: sequential greedy qUCB of
  the primary objective, or of the round's ParEGO (augmented Chebyshev) scalarization of the
  objectives; with constraints each greedy step takes the candidate with the largest
  (qUCB gain over the batch so far) × PoF, `PoF = Π_j Φ(−μ_j/σ_j)` of the slack GPs: UCB × PoF,
  so likely-infeasible designs are not screened (a feasibility-weighted MC objective would not
  do: under qUCB's `|Y − μ|` spread a sample split between feasible and the infeasible cost
  *raises* the bound at the constraint's edge);
* :meth:`MultiTaskOutputs.pick_expensive` — what ``[oracle]`` gets: qLogNEI of the primary
  objective with ``constraints=`` (the incumbent is the best feasible observation), or, for a
  Pareto campaign, qLogNEHVI of the objectives over the reference point the single-fidelity
  Pareto path uses (``pareto.reference_point``: given per objective, else inferred).

With one output (no constraints, one objective) the picks are the single model's
(``MultiTaskSurrogate.pick_ucb`` / ``pick_nei``).

    >>> mt = MultiTaskOutputs.fit(Z, Y, objectives=1, bounds=bounds, seed=0)
    >>> order = mt.prefilter(Z_cand, 512, beta=2.0)          # rows worth scoring
    >>> picks = mt.pick_expensive(Z_cand[order], 4, observed=Z_main)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models import ModelListGP
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.surrogate.constraints import ETA, log_pof
from optimizer.surrogate.multitask import MultiTaskSurrogate
from optimizer.surrogate.prefilter import feasibility_axis, prefilter_keep
from optimizer.surrogate.scalarize import Scalarization, make_scalarization

__all__ = ["MultiTaskOutputs"]


class MultiTaskOutputs:
    """Fitted multi-task GPs, one per output; build with :meth:`fit`.

    Attributes:
        parts: one :class:`MultiTaskSurrogate` per output (objectives, then constraints).
        objectives: `m`, the objective outputs; constraints: `k`, the slack outputs.
        task_correlation: the primary objective's learned correlation of each task with task 0.
    """

    def __init__(self, parts: list[MultiTaskSurrogate], objectives: int, target_Y: Tensor) -> None:
        self.parts = parts
        self.objectives = objectives
        self.constraints = len(parts) - objectives
        self._target_Y = target_Y
        self.task_correlation = parts[0].task_correlation
        self.primary = parts[0]
        self._model = ModelListGP(*[p.model for p in parts]) if len(parts) > 1 else None
        if self._model is not None:
            self._model.eval()
        self._mean = torch.tensor([p.scales[0].mean for p in parts], dtype=torch.double)
        self._std = torch.tensor([p.scales[0].std for p in parts], dtype=torch.double)

    @classmethod
    def fit(cls, Z: Sequence[Tensor], Y: Sequence[Tensor], *, objectives: int, bounds: Tensor,
            seed: int = 0, previous: list[dict[str, Tensor]] | None = None, refit: bool = True,
            maxiter: int = 150) -> MultiTaskOutputs:
        """Fit output `j`'s GP on every task's column `j`: ``Z[t]`` (`n_t x d` features) and
        ``Y[t]`` (`n_t x (m + k)`: signed objectives, then constraint slacks) of task `t`.

        ``previous``: the :attr:`hyperparameters` of an earlier fit (one dict per output; a
        different count is a cold start); ``refit``, ``maxiter`` as in
        :meth:`MultiTaskSurrogate.fit`.

        Raises:
            SurrogateError: as :meth:`MultiTaskSurrogate.fit`, or ``Y`` columns disagree.
        """
        cols = {int(y.reshape(len(y), -1).shape[1]) for y in Y if len(y)}
        if len(cols) != 1 or objectives < 1 or objectives > next(iter(cols)):
            raise SurrogateError(f"multi-task outputs: every task needs the same (m + k) result "
                                 f"columns with m = {objectives} >= 1; got {sorted(cols)}")
        n_out = next(iter(cols))
        prev = previous if previous is not None and len(previous) == n_out else [None] * n_out
        parts = []
        for j in range(n_out):
            col = [y.reshape(len(y), -1)[:, j] if len(y) else y.reshape(-1) for y in Y]
            parts.append(MultiTaskSurrogate.fit(Z, col, bounds=bounds, seed=seed + j,
                                                previous=prev[j], refit=refit, maxiter=maxiter))
        return cls(parts, objectives, Y[0].double().reshape(len(Y[0]), -1))

    @property
    def hyperparameters(self) -> list[dict[str, Tensor]]:
        """Each output's fitted hyperparameters (the warm start of the next fit)."""
        return [p.hyperparameters for p in self.parts]

    def predict_all(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """The expensive task's posterior mean and std of every output (`b x (m + k)`)."""
        ms, ss = zip(*(p.predict(Z) for p in self.parts), strict=True)
        return torch.stack(ms, -1), torch.stack(ss, -1)

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """The expensive task's posterior mean and std of the primary objective."""
        return self.primary.predict(Z)

    def prefilter(self, Z: Tensor, size: int, *, beta: float) -> Tensor:
        """Indices of the (at most) ``size`` rows of ``Z`` worth scoring, best first: the
        lowest Pareto layers of each objective's `μ + β σ` and, with constraints, log PoF
        floored as the single-fidelity screening does (``prefilter.prefilter_keep``: the batch
        acquisitions increase in all of them); ties, and the order, by the primary `μ + β σ`
        feasibility-weighted (`+ log PoF ·` the primary's observed spread)."""
        mean, std = self.predict_all(Z)
        m = self.objectives
        ucb = mean[:, :m] + beta * std[:, :m]
        lp = log_pof(mean[:, m:], std[:, m:] ** 2) if self.constraints else None
        spread = float(self._std[0])
        spread = spread if math.isfinite(spread) and spread > 0 else 1.0
        keep = prefilter_keep(ucb, ucb[:, 0], min(size, len(Z)), log_pof=lp, spread=spread)
        tie, _ = feasibility_axis(ucb[:, 0], lp, spread)
        idx = torch.nonzero(keep).flatten()
        return idx[torch.argsort(-tie[idx], stable=True)]

    # ---- picks ----------------------------------------------------------------------------------
    def pick_cheap(self, Z: Tensor, k: int, *, beta: float, pending: Tensor | None = None,
                   weights: Sequence[float] | None = None) -> list[int]:
        """``k`` rows of ``Z`` for a cheap oracle: sequential greedy qUCB of the expensive
        task's primary objective (``weights``: of the augmented Chebyshev scalarization of the
        objectives, ParEGO's weights for the round); with constraints each greedy step's gain
        is weighted by the candidate's PoF (UCB × PoF, in log space: ``_greedy_times``);
        ``pending`` conditioned on."""
        if self._model is None:
            return self.primary.pick_ucb(Z, k, beta=beta, pending=pending)
        g = self._scalarization(weights)

        def objective(Y: Tensor, X: Tensor | None = None) -> Tensor:
            Y = self._unstandardize(Y)
            return g(Y[..., :self.objectives]) if g is not None else Y[..., 0]

        acq = qUpperConfidenceBound(self._model, beta=beta ** 2, sampler=self.primary._sampler(),
                                    objective=GenericMCObjective(objective),
                                    X_pending=self._scaled(pending))
        if not self.constraints:
            return self.primary._greedy(acq, Z, k)
        mean, std = self.predict_all(Z)
        m = self.objectives
        lp = log_pof(mean[:, m:], std[:, m:] ** 2)
        return _greedy_times(acq, self.primary._scale(Z), k, lp)

    def pick_expensive(self, Z: Tensor, q: int, *, observed: Tensor, pending: Tensor | None = None,
                       reference: Tensor | None = None) -> list[int]:
        """``q`` rows of ``Z`` for ``[oracle]``: constrained qLogNEI of the primary objective
        over the ``observed`` expensive designs' features, or with ``reference`` (signed, `m`
        floats) qLogNEHVI of the objectives; ``pending`` conditioned on. Sequential greedy;
        with constraints a step whose gains are saturated picks by single-candidate value, as
        the single-fidelity screening (``screening._greedy``)."""
        if self._model is None and reference is None:
            return self.primary.pick_nei(Z, q, observed=observed, pending=pending)
        model = self._model if self._model is not None else self.primary.model
        cons, eta = self._constraints()
        extra: dict[str, Any] = {"constraints": cons, "eta": eta} if cons else {}
        base = self.primary._scale(observed)
        pend = self._scaled(pending)

        def make(more: Tensor | None) -> Any:
            parts = [p for p in (pend, more) if p is not None]
            X_pending = torch.cat(parts) if parts else None
            if reference is not None:
                return qLogNoisyExpectedHypervolumeImprovement(
                    model=model, ref_point=reference.double().reshape(-1), X_baseline=base,
                    sampler=self.primary._sampler(), prune_baseline=True, cache_root=False,
                    objective=GenericMCMultiOutputObjective(self._objective_values),
                    X_pending=X_pending, **extra)
            return qLogNoisyExpectedImprovement(
                model, X_baseline=base, sampler=self.primary._sampler(), prune_baseline=True,
                objective=GenericMCObjective(self._primary_value), X_pending=X_pending, **extra)

        if not cons:
            return self.primary._greedy(make(None), Z, q)
        # constrained: once the greedy gains saturate, the largest is an infeasible design's
        # (a negligible improvement times the sigmoid's tail), so such a step takes the highest
        # single-candidate value: the single-fidelity screening's greedy (``screening._greedy``)
        from optimizer.surrogate.screening import _greedy

        choices = self.primary._scale(Z)
        with torch.no_grad():
            picks, _ = _greedy(make, choices, None, min(q, len(Z)), 0.0, True, 512, saturated=True)
        return [int(i) for i in picks]

    # ---- helpers --------------------------------------------------------------------------------
    def _unstandardize(self, Y: Tensor) -> Tensor:
        return Y * self._std.to(Y) + self._mean.to(Y)

    def _objective_values(self, Y: Tensor, X: Tensor | None = None) -> Tensor:
        """The `m` objectives of standardized samples, in their (signed) units."""
        return self._unstandardize(Y)[..., :self.objectives]

    def _primary_value(self, Y: Tensor, X: Tensor | None = None) -> Tensor:
        return self._unstandardize(Y)[..., 0]

    def _scaled(self, Z: Tensor | None) -> Tensor | None:
        return None if Z is None or not len(Z) else self.primary._scale(Z)

    def _constraints(self) -> tuple[list[Callable[[Tensor], Tensor]], Tensor]:
        """BoTorch constraint callables on raw (standardized) samples, in slack units, and the
        sigmoid temperature per constraint (``ETA`` x the slack's spread, as single-fidelity)."""
        m, k = self.objectives, self.constraints

        def column(i: int) -> Callable[[Tensor], Tensor]:
            return lambda Y: Y[..., i] * self._std[i].to(Y) + self._mean[i].to(Y)

        return [column(m + j) for j in range(k)], ETA * self._std[m:].clone()

    def _scalarization(self, weights: Sequence[float] | None) -> Scalarization | None:
        if weights is None or self.objectives == 1:
            return None
        return make_scalarization(self._target_Y[:, :self.objectives], maximize=True,
                                  weights=weights, kind="chebyshev")


def _greedy_times(acq: Any, choices: Tensor, k: int, log_weight: Tensor) -> list[int]:
    """``k`` rows of ``choices`` (scaled features), each step the row with the largest
    `(acq(S ∪ {x}) − acq(S)) · weight(x)` over the batch `S` so far (`acq(∅)`: the lowest
    single-row value, so every gain is `≥ 0`); when every gain is 0 the largest
    `(acq(S ∪ {x}) − min) · weight(x)`, when those are 0 too the largest weight. Scored in log
    space (`log gain + log_weight`): a weight `exp` underflows to 0 (a PoF below `e^−745`, a
    constraint `≈ 38 σ` away) still ranks the candidates."""
    n = choices.shape[0]
    picked: list[int] = []
    base = 0.0
    with torch.no_grad():
        for _ in range(min(k, n)):
            S = choices[picked]
            vals = torch.cat([acq(torch.cat([S.unsqueeze(0).expand(len(c), -1, -1), c.unsqueeze(1)], 1))
                              for c in choices.split(512)])
            if not picked:
                base = float(vals.min())
            # the first of these with a finite score for an unpicked row decides
            for score in (_log_positive(vals - base) + log_weight,
                          _log_positive(vals - vals.min()) + log_weight,
                          log_weight.clone(), torch.zeros_like(vals)):
                score[picked] = -math.inf
                if bool(torch.isfinite(score).any()):
                    break
            i = int(torch.argmax(score))
            picked.append(i)
            base = float(vals[i])
    return picked


def _log_positive(x: Tensor) -> Tensor:
    """`log x` where `x > 0`, else `−∞`."""
    return torch.where(x > 0, x.clamp_min(torch.finfo(x.dtype).tiny).log(), -math.inf)
