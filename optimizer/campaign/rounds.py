"""One generation round: history → surrogate → Ray SMC chunks → candidates → q selected.

`p_k(x) ∝ p_pre(x) · exp(r̂_k(x) / α_k)`, `r̂_k = μ_k + β σ_k` (the optimistic surrogate).

1. split the history: completed designs `X` with results `Y` (sign-flipped for objectives to
   minimize, so the surrogate always maximizes) and in-flight designs `X_pending`;
2. with fewer than ``MIN_OBSERVATIONS`` results the round samples the plain prior (round 0);
   otherwise fit the surrogate (warm-started from the previous round's state);
3. hand ``workers.count × chunks_per_worker`` chunks to the pool, each seeded by
   ``derive_seed(campaign seed, round, chunk)`` — the surrogate goes as state bytes;
4. pool the particles (chunk weights are normalized per chunk, so each chunk gets mass
   `1/C`: `log w = log w_chunk − log C`), keep lineage (group = chunk, particle = index);
5. pick q: the surrogate's acquisition (pending points passed, known designs excluded), or a
   maximin space-filling batch in feature space for a plain-prior round.

The plan is returned, not written: the driver records it in one transaction.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimizer.campaign.auto_alpha import AlphaChoice, AutoAlphaInputs, choose_alpha
from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.crashpoints import crash_point
from optimizer.campaign.round_diagnostics import round_diagnostics
from optimizer.campaign.spacefill import maximin_select
from optimizer.seeds import derive_seed
from optimizer.workers.pool import PoolEvent, SupervisedPool
from optimizer.workers.smc_worker import ChunkResult, ChunkSpec
from storage import History, NewCandidate, QueryRecord

#: Results needed before the surrogate is fitted; before that a round samples the plain prior.
MIN_OBSERVATIONS = 2


@dataclass(frozen=True, eq=False)
class RoundPlan:
    """A generated round, ready for ``Storage.record_round``."""

    index: int
    alpha: float
    tilted: bool
    candidates: list[NewCandidate]
    selected: list[int]
    surrogate_state: dict[str, Any] | None
    surrogate_blob: bytes | None
    timings: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)
    #: distinct founders of the final particles, summed over chunks (each has its own founders)
    unique_ancestors: int | None = None


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The surrogate's view of the history (maximization orientation)."""

    X: np.ndarray
    Y: np.ndarray
    Yvar: np.ndarray | None
    X_pending: np.ndarray
    X_failed: np.ndarray

    @property
    def n(self) -> int:
        return len(self.Y)


def training_data(history: History, config: CampaignConfig,
                  imported: Sequence[QueryRecord] = ()) -> TrainingData:
    """`X`, `Y` (sign-flipped for minimized objectives), `Yvar` (when every row reports noise)
    and `X_pending` from a stored history; ``imported``: succeeded queries of the campaigns in
    ``history.import_from`` (warm start), appended to the training set."""
    names = [o.name for o in config.objectives]
    signs = np.array([1.0 if o.direction == "maximize" else -1.0 for o in config.objectives])
    done = [q for q in (*history.completed, *imported)
            if q.values and all(n in q.values for n in names)]
    if done:
        X = np.stack([np.asarray(q.design, dtype=np.float64) for q in done])
        Y = np.array([[q.values[n] for n in names] for q in done if q.values is not None],
                     dtype=np.float64) * signs  # (every row of done has values)
    else:
        X, Y = np.zeros((0,)), np.zeros((0, len(names)))
    Yvar = None
    if done and all(q.noise and all(n in q.noise for n in names) for q in done):
        Yvar = np.array([[q.noise[n] for n in names] for q in done], dtype=np.float64)  # type: ignore[index]
    pend = [q.design for q in history.in_flight if q.design is not None]
    X_pending = np.stack([np.asarray(d, dtype=np.float64) for d in pend]) if pend else np.zeros((0,))
    bad = [q.design for q in history.failed if q.design is not None]
    X_failed = np.stack([np.asarray(d, dtype=np.float64) for d in bad]) if bad else np.zeros((0,))
    return TrainingData(X=X, Y=Y, Yvar=Yvar, X_pending=X_pending, X_failed=X_failed)


class RoundGenerator:
    """Generates rounds with a supervised pool of SMC workers.

    Args:
        config: the campaign config.
        pool: a ``SupervisedPool`` of ``SMCWorker`` actors.
        surrogate: the surrogate adapter (``optimizer.campaign.surrogate.SurrogateAdapter``),
            built lazily by the caller; None for plain-prior-only use.
        on_event: pool events (progress output, tests that kill a worker mid-round).
    """

    def __init__(self, config: CampaignConfig, pool: SupervisedPool, surrogate: Any | None = None,
                 *, on_event: Callable[[PoolEvent], None] | None = None,
                 die_flag: str | None = None) -> None:
        self.config = config
        self.pool = pool
        self.surrogate = surrogate
        self.on_event = on_event
        self.die_flag = die_flag

    def plan(self, index: int, history: History, q: int, *, tilted_rounds_before: int,
             previous_state: bytes | None = None,
             imported: Sequence[QueryRecord] = (),
             auto: AutoAlphaInputs | None = None) -> RoundPlan:
        """Generate round ``index`` selecting ``q`` designs (see the module docstring);
        ``imported``: other campaigns' results that warm-start the surrogate; ``auto``: what
        ``alpha = "auto"`` chooses α from (``optimizer.campaign.auto_alpha``)."""
        cfg = self.config
        t0 = time.perf_counter()
        data = training_data(history, cfg, imported)
        tilted = data.n >= MIN_OBSERVATIONS and self.surrogate is not None
        surrogate = self.surrogate if tilted else None  # set exactly when tilted
        alpha = cfg.sampler.alpha_for_round(tilted_rounds_before)
        state = state_meta = None
        fit_s = 0.0
        model = None
        if surrogate is not None:
            fitted = surrogate.fit(data, previous_state=previous_state)
            model, state, state_meta = fitted.model, fitted.state, fitted.summary
            fit_s = time.perf_counter() - t0
        choice: AlphaChoice | None = None
        if model is not None and surrogate is not None and cfg.sampler.alpha_auto:
            choice = choose_alpha(model.reward(beta=surrogate.config.beta), cfg.sampler,
                                  auto.prior if auto else None, auto.gap if auto else None,
                                  campaign=cfg.name)
            alpha = choice.alpha
        das = cfg.sampler.das_options()
        chunks = [
            ChunkSpec(
                round_index=index, chunk=c, seed=derive_seed(cfg.seed, index, c),
                num_particles=cfg.workers.particles_per_worker, alpha=alpha, das=das,
                surrogate_state=state, surrogate=surrogate.config if surrogate is not None else None,
                X=data.X if tilted else None, Y=data.Y if tilted else None,
                Yvar=data.Yvar if tilted else None, die_flag=self.die_flag,
            )
            for c in range(cfg.workers.num_chunks)
        ]
        t1 = time.perf_counter()
        outs = self.pool.map("run_chunk", chunks, on_event=self._event)
        smc_s = time.perf_counter() - t1
        designs = np.concatenate([o.samples for o in outs])
        features = np.concatenate([o.features for o in outs])
        logw = np.concatenate([o.log_weights - math.log(len(outs)) for o in outs])
        group = np.concatenate([np.full(len(o.samples), o.chunk) for o in outs])
        particle = np.concatenate([np.arange(len(o.samples)) for o in outs])
        t2 = time.perf_counter()
        note = ""
        acq = mean = std = None
        if surrogate is not None:
            res = surrogate.screen(model, designs, q, pending=data.X_pending,
                                   observed=data.X_failed,
                                   seed=derive_seed(cfg.seed, index, 0, "screen"))
            sel, acq, mean, std, note = list(res.selected), res.acquisition, res.mean, res.std, res.note
            excluded, reasons = res.excluded, res.reasons
        else:
            sel, excluded, reasons = [], np.zeros(len(designs), dtype=bool), ()
        if len(sel) < q:  # round 0, or too few eligible candidates: fill space-filling
            space = features if self.surrogate is not None else designs.reshape(len(designs), -1)
            free = np.flatnonzero(~excluded & ~np.isin(np.arange(len(designs)), sel))
            known = _stack_features(self, data)
            taken = space[np.asarray(sel, dtype=np.int64)] if sel else None
            avoid = np.concatenate([a for a in (known, taken) if a is not None]) if (
                known is not None or taken is not None) else None
            k = min(q - len(sel), len(free))
            if k:
                extra = maximin_select(space[free], k, seed=derive_seed(cfg.seed, index, 0, "spacefill"),
                                       avoid=avoid)
                sel = list(sel) + [int(free[i]) for i in extra]
        screen_s = time.perf_counter() - t2
        candidates = [
            NewCandidate(
                design=designs[i], features=features[i], log_weight=float(logw[i]),
                group=int(group[i]), particle=int(particle[i]),
                surrogate_mean=None if mean is None else float(mean[i]),
                surrogate_std=None if std is None else float(std[i]),
                acquisition=None if acq is None else _finite_or_none(acq[i]),
                excluded_reason=reasons[i] if reasons else None,
            )
            for i in range(len(designs))
        ]
        summary = {
            "tilted": tilted, "screen_note": note, "observations": data.n,
            "pending": int(len(data.X_pending)),
            "imported": {src: n for src, n in sorted(Counter(q.campaign for q in imported).items())},
            "particles": int(len(designs)), "chunks": len(outs),
            "ess": [o.ess.tolist() for o in outs],
            "lambdas": [o.lambdas.tolist() for o in outs],
            "log_normalizer": [o.log_normalizer for o in outs],
            "worker_seconds": [o.seconds for o in outs],
            "replacements": self.pool.replacements,
            "diagnostics": round_diagnostics(outs, alpha, tilted=tilted, selected=sel,
                                             features=features),
        }
        if choice is not None:
            summary["alpha_auto"] = choice.to_json()
        timings = {"fit_s": fit_s, "smc_s": smc_s, "screen_s": screen_s,
                   "total_s": time.perf_counter() - t0}
        return RoundPlan(index=index, alpha=alpha, tilted=tilted, candidates=candidates,
                         selected=[int(i) for i in sel], surrogate_state=state_meta,
                         surrogate_blob=state, timings=timings, summary=summary,
                         unique_ancestors=unique_ancestors(outs))

    def _event(self, event: PoolEvent) -> None:
        if event.kind == "submit":
            crash_point("smc")
        if self.on_event is not None:
            self.on_event(event)


def unique_ancestors(outs: Sequence[ChunkResult]) -> int:
    """How many distinct founders the chunks' final particles descend from (``origin`` indexes a
    chunk's own initial particles, so the per-chunk counts add up)."""
    return int(sum(len(np.unique(np.asarray(o.origin).reshape(-1))) for o in outs))


def _stack_features(gen: RoundGenerator, data: TrainingData) -> np.ndarray | None:
    """Features of known designs (observed + pending), for the space-filling batch to avoid."""
    known = [a for a in (data.X, data.X_pending) if a.ndim > 1 and len(a)]
    if not known:
        return None
    X = np.concatenate([a.reshape(len(a), -1) for a in known])
    if gen.surrogate is not None:
        return gen.surrogate.features(np.concatenate(known))
    return X


def _finite_or_none(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
