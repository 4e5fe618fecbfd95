"""The asynchronous pipeline's surrogate for re-scoring a pool: condition, or refit on schedule.

When results arrive between two populations, the pool is re-screened with a surrogate that knows
them. Re-optimizing the hyperparameters (a full fit, ``SurrogateAdapter.fit``) takes seconds on a
loaded machine; conditioning the newest full fit on the new results with its hyperparameters held
(``optimizer.surrogate.condition``) takes milliseconds and gives the exact GP posterior under
those hyperparameters. So the pipeline conditions, and re-fits fully only when ``refit_every``
results arrived since the newest full fit (a population's or a re-scoring's own):

    >>> base = FullFit(fit=pop.fit, observations=pop.observations)
    >>> out = rescoring_fit(adapter, base, data, refit_every=16)
    >>> out.kind                                     # "reuse", "condition" or "refit"
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from optimizer.campaign.surrogate import SurrogateFit
from optimizer.errors import SurrogateError
from optimizer.threads import torch_threads
from optimizer.workers.components import as_tensor

log = logging.getLogger(__name__)

RescoreKind = Literal["reuse", "condition", "refit"]


@dataclass(frozen=True)
class FullFit:
    """A fit whose hyperparameters were optimized, and how many results it was fitted on."""

    fit: SurrogateFit
    observations: int


@dataclass(frozen=True)
class Rescored:
    """The surrogate to screen with: ``fit``; ``kind``: how it was made; ``full``: the newest
    full fit after this call (``base``, or the refit); ``seconds``: what it took."""

    fit: SurrogateFit
    kind: RescoreKind
    full: FullFit
    seconds: float


def rescoring_fit(adapter: Any, base: FullFit, data: Any, *, refit_every: int) -> Rescored:
    """The surrogate for ``data`` (``TrainingData``, `n` results) from the full fit ``base``:

    * ``reuse``: `n` equals the results ``base`` was fitted on: ``base`` itself;
    * ``refit``: `n − base.observations ≥ refit_every`, or conditioning is impossible (the data
      changed kind, e.g. reported noise appeared): a full fit warm-started from ``base``;
    * ``condition``: otherwise, ``base``'s hyperparameters conditioned on all `n` results.
    """
    t0 = time.perf_counter()
    n = int(data.n)
    if n == base.observations:
        return Rescored(fit=base.fit, kind="reuse", full=base, seconds=0.0)
    if abs(n - base.observations) < refit_every:
        try:
            fit = condition_fit(adapter, base.fit, data)
            return Rescored(fit=fit, kind="condition", full=base, seconds=time.perf_counter() - t0)
        except SurrogateError as exc:
            log.info("re-scoring: conditioning the last fit failed (%s); refitting", exc)
    fit = adapter.fit(data, previous_state=base.fit.state)
    full = FullFit(fit=fit, observations=n)
    return Rescored(fit=fit, kind="refit", full=full, seconds=time.perf_counter() - t0)


def condition_fit(adapter: Any, base: SurrogateFit, data: Any) -> SurrogateFit:
    """``base``'s model conditioned on ``data`` without refitting, as a ``SurrogateFit`` (state
    bytes and summary like ``SurrogateAdapter.fit``'s; ``summary["conditioned"]`` is True)."""
    from optimizer.surrogate.condition import condition

    with torch_threads(adapter.threads):
        model = condition(base.model, as_tensor(data.X), as_tensor(data.Y), as_tensor(data.Yvar))
    blob = model.state().to_bytes()
    info = model.fit_info
    summary = {"observations": info.num_observations, "fit_ok": list(info.fit_ok),
               "warm_started": True, "fit_seconds": info.seconds, "state_bytes": len(blob),
               "messages": [m for m in info.messages if m][:3], "conditioned": True,
               "hyperparameters_from": base.summary.get("observations")}
    return SurrogateFit(model=model, state=blob, summary=summary)
