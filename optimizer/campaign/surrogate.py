"""The campaign's surrogate in the driver process: fit, screen and serialize (the driver's side of
``optimizer.surrogate``; the workers only rebuild the reward from the state bytes).

    >>> adapter = SurrogateAdapter(bundle, config.surrogate_for_loop())
    >>> fitted = adapter.fit(training_data, previous_state=last_blob)   # a SurrogateFit
    >>> picked = adapter.screen(fitted.model, designs, q=4, pending=X_pending, observed=X, seed=s)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from optimizer.surrogate.config import SurrogateConfig
from optimizer.threads import torch_threads
from optimizer.workers.components import PriorBundle, as_tensor


@dataclass(frozen=True)
class SurrogateFit:
    """One fit of the campaign's surrogate.

    Attributes:
        model: the fitted ``optimizer.surrogate.Surrogate``.
        state: its state bytes (``Surrogate.state().to_bytes()``), stored with the round.
        summary: JSON-able summary for the round row (observations, fit_ok, warm_started,
            fit_seconds, state_bytes, up to three messages).
    """

    model: Any
    state: bytes
    summary: dict[str, Any]


@dataclass(frozen=True)
class Screened:
    """Screening outcome for all `M` candidates (primary objective's mean / std)."""

    selected: np.ndarray
    acquisition: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    excluded: np.ndarray
    #: why each candidate was left out (None: eligible), stored with the candidate
    reasons: tuple[str | None, ...] = ()
    note: str = ""
    #: distinct ancestor families among the selected (None when no families were given)
    batch_families: int | None = None


class SurrogateAdapter:
    """Fit, screen and serialize the campaign's surrogate in the driver process.

    Args:
        bundle: the prior bundle (for its feature maps; the prior itself is not needed).
        config: the loop's surrogate config (``CampaignConfig.surrogate_for_loop()``: β, the
            acquisition, torch threads for fit and screening — see
            ``optimizer.threads.torch_threads`` — the objectives' directions and the campaign seed).
    """

    def __init__(self, bundle: PriorBundle, config: SurrogateConfig) -> None:
        self.bundle = bundle
        self.config = config
        self.acquisition = config.acquisition
        self.threads = config.threads

    def fit(self, data: Any, *, previous_state: bytes | None = None) -> SurrogateFit:
        """Fit on ``data`` (``TrainingData``), warm-started from ``previous_state`` when it fits."""
        from optimizer.errors import SurrogateError
        from optimizer.surrogate.gp import Surrogate
        from optimizer.surrogate.state import SurrogateState

        previous = None
        if previous_state is not None:
            try:
                previous = SurrogateState.from_bytes(previous_state)
            except SurrogateError:
                previous = None  # an unreadable old state only costs the warm start
        with torch_threads(self.threads):
            model = Surrogate.fit(as_tensor(data.X), as_tensor(data.Y), as_tensor(data.Yvar),
                                  feature_map=self.bundle.feature_map, config=self.config,
                                  previous=previous)
        blob = model.state().to_bytes()
        info = model.fit_info
        summary = {"observations": info.num_observations, "fit_ok": list(info.fit_ok),
                   "warm_started": info.warm_started, "fit_seconds": info.seconds,
                   "state_bytes": len(blob), "messages": [m for m in info.messages if m][:3]}
        return SurrogateFit(model=model, state=blob, summary=summary)

    def screen(self, model: Any, designs: np.ndarray, q: int, *, pending: np.ndarray,
               observed: np.ndarray, seed: int, families: np.ndarray | None = None,
               num_mc_samples: int | None = None) -> Screened:
        """Pick up to q of ``designs`` by the acquisition; values for the scored candidates
        (NaN for those the prefilter left out). ``families``: one ancestor-family id per design
        (diverse batches, ``optimizer.surrogate.screening``); ``num_mc_samples``: quasi-MC
        samples of the acquisition (default the surrogate config's)."""
        import torch

        from optimizer.surrogate.screening import screen

        with torch_threads(self.threads):
            res = screen(model, as_tensor(designs), q,
                         pending=as_tensor(pending) if pending.ndim > 1 and len(pending) else None,
                         observed=as_tensor(observed) if observed.ndim > 1 and len(observed) else None,
                         acquisition=self.acquisition, seed=int(seed) % (2**31),
                         num_mc_samples=num_mc_samples,
                         families=None if families is None else torch.as_tensor(
                             np.asarray(families, dtype=np.int64)))
        return Screened(selected=res.selected.numpy().astype(np.int64),
                        acquisition=_np(res.acq_values), mean=_np(res.mean[:, 0]),
                        std=_np(res.std[:, 0]), excluded=res.excluded.numpy().astype(bool),
                        reasons=_reasons(res.exclusions, len(designs)), note=res.note,
                        batch_families=res.batch_families)

    def features(self, designs: np.ndarray) -> np.ndarray:
        """φ(designs) as a float64 `B x k` array (space-filling, candidate logging)."""
        with torch_threads(self.threads):
            return self.bundle.features_np(designs)


def _np(t: Any) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().cpu().double().numpy().reshape(-1)
    return np.asarray(t, dtype=float)


def _reasons(exclusions: Any, m: int) -> tuple[str | None, ...]:
    """One reason per candidate ("observed", "queried", "pending", "candidate") or None."""
    out: list[str | None] = [None] * m
    for e in exclusions:
        out[int(e.index)] = str(e.reason)
    return tuple(out)
