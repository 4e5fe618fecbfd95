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
   maximin space-filling batch in feature space for a plain-prior round (a Pareto campaign's:
   k-means medoids, typical designs rather than the prior's extremes, ``spacefill.py``).

The plan is returned, not written: the driver records it in one transaction.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from optimizer.campaign.auto_alpha import AlphaChoice, AutoAlphaInputs, choose_alpha
from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_pareto import is_pareto
from optimizer.campaign.crashpoints import crash_point
from optimizer.campaign.history_arrays import training_arrays
from optimizer.campaign.pareto_round import chunk_weights
from optimizer.campaign.round_diagnostics import batch_figures, sampler_diagnostics
from optimizer.campaign.spacefill import maximin_select, typical_select
from optimizer.seeds import derive_seed
from optimizer.workers.pool import PoolEvent, SupervisedPool
from optimizer.workers.smc_worker import ChunkResult, ChunkSpec
from storage import History, HistoryColumns, NewCandidate, QueryRecord

log = logging.getLogger(__name__)
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
    #: the selected candidates' rows in the population they came from (the pipeline marks them used)
    population_rows: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Population:
    """One round's pooled SMC particles before selection (``RoundGenerator.generate``).

    The synchronous loop selects one batch from it at once; the asynchronous pipeline
    (``optimizer.campaign.pipeline``) keeps it as its candidate pool and selects several batches
    from it, re-scored as results arrive.

    Attributes:
        index: the round it was generated for; alpha, tilted: its target.
        designs, features, log_weights, group, particle: one row per particle.
        fit: the surrogate fit that tilted it (``SurrogateFit``), None for a plain-prior round.
        sampler: the SMC diagnostics stored in the round summary (ESS, λ, log Ẑ per chunk).
        unique_ancestors: distinct founders of the final particles.
        timings: ``fit_s`` and ``smc_s``; observations: results it was fitted on.
    """

    index: int
    alpha: float
    tilted: bool
    designs: np.ndarray
    features: np.ndarray
    log_weights: np.ndarray
    group: np.ndarray
    particle: np.ndarray
    #: (chunk, founder) family id per particle (``ancestor_families``), for diverse batches
    family: np.ndarray
    fit: Any
    sampler: dict[str, Any]
    unique_ancestors: int
    timings: dict[str, float]
    observations: int
    #: min ESS fraction, resampling events, unique ancestors, estimated KL (``round_diagnostics``)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    #: when its generation (surrogate fit, then the SMC chunks) started and ended (Unix seconds)
    generated: tuple[float, float] = (0.0, 0.0)


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


def training_data(history: History | HistoryColumns, config: CampaignConfig,
                  imported: Sequence[QueryRecord] = ()) -> TrainingData:
    """`X`, `Y` (sign-flipped for minimized objectives), `Yvar` (when every row reports noise)
    and `X_pending` from a stored history (row-wise, or the driver's columns: the same arrays,
    ``history_arrays.training_arrays``); ``imported``: succeeded queries of the campaigns in
    ``history.import_from`` (warm start), appended to the training set. Outcome constraints add
    one column each after the objectives: the slack `c ≤ 0` ⇔ feasible
    (``ConstraintConfig.slack``); a result without every output is left out."""
    names = [o.name for o in config.objectives]
    signs = np.array([1.0 if o.direction == "maximize" else -1.0 for o in config.objectives])
    cons = config.constraints
    names_all = names + [c.name for c in cons]  # the noise of a slack is its output's
    if isinstance(history, HistoryColumns):
        X, Y, Yvar, X_pending, X_failed = training_arrays(history, names_all,
                                                          np.ones(len(names_all)), imported)
        Y = Y.copy()
        Y[:, :len(names)] *= signs
        for j, c in enumerate(cons):  # the slack is affine: applied to the whole column
            Y[:, len(names) + j] = c.slack(Y[:, len(names) + j])
        return TrainingData(X=X, Y=Y, Yvar=Yvar, X_pending=X_pending, X_failed=X_failed)
    done = [q for q in (*history.completed, *imported)
            if q.values and all(n in q.values for n in names_all)]
    if done:
        X = np.stack([np.asarray(q.design, dtype=np.float64) for q in done])
        Y = np.array([[q.values[n] for n in names] for q in done if q.values is not None],
                     dtype=np.float64) * signs  # (every row of done has values)
        if cons:
            Y = np.hstack([Y, np.array([[c.slack(float(q.values[c.name])) for c in cons]
                                        for q in done if q.values is not None])])
    else:
        X, Y = np.zeros((0,)), np.zeros((0, len(names_all)))
    Yvar = None
    if done and all(q.noise and all(n in q.noise for n in names_all) for q in done):
        Yvar = np.array([[q.noise[n] for n in names_all] for q in done], dtype=np.float64)  # type: ignore[index]
    pend = [q.design for q in history.in_flight if q.design is not None]
    X_pending = np.stack([np.asarray(d, dtype=np.float64) for d in pend]) if pend else np.zeros((0,))
    bad = [q.design for q in history.failed if q.design is not None]
    X_failed = np.stack([np.asarray(d, dtype=np.float64) for d in bad]) if bad else np.zeros((0,))
    return TrainingData(X=X, Y=Y, Yvar=Yvar, X_pending=X_pending, X_failed=X_failed)


def imported_counts(imported: Sequence[QueryRecord], config: CampaignConfig) -> dict[str, Any]:
    """The round summary's warm-start counts: ``imported`` — per source campaign, the results
    the surrogate trains on (every objective and constraint output reported, as
    :func:`training_data` requires); ``imported_skipped`` (only when some are) — per source, the
    results left out for lacking one, with the outputs they lack (a WARNING names them)."""
    needed = [o.name for o in config.objectives] + [c.name for c in config.constraints]
    used: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    lacking: dict[str, set[str]] = {}
    for q in imported:
        missing = [n for n in needed if not q.values or n not in q.values]
        if missing:
            skipped[q.campaign] += 1
            lacking.setdefault(q.campaign, set()).update(missing)
        else:
            used[q.campaign] += 1
    out: dict[str, Any] = {"imported": {src: used[src] for src in sorted(set(used) | set(skipped))}}
    if skipped:
        out["imported_skipped"] = {src: {"results": skipped[src], "lacking": sorted(lacking[src])}
                                   for src in sorted(skipped)}
        log.warning("campaign %s: %s imported result(s) are not trained on: %s", config.name,
                    sum(skipped.values()), "; ".join(
                        f"{n} from campaign {src} lack output(s) {', '.join(sorted(lacking[src]))}"
                        for src, n in sorted(skipped.items())))
    return out


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

    def plan(self, index: int, history: History | HistoryColumns, q: int, *, tilted_rounds_before: int,
             previous_state: bytes | None = None,
             imported: Sequence[QueryRecord] = (),
             auto: AutoAlphaInputs | None = None) -> RoundPlan:
        """Generate round ``index`` selecting ``q`` designs (see the module docstring);
        ``imported``: other campaigns' results that warm-start the surrogate; ``auto``: what
        ``alpha = "auto"`` chooses α from (``optimizer.campaign.auto_alpha``)."""
        pop = self.generate(index, history, tilted_rounds_before=tilted_rounds_before,
                            previous_state=previous_state, imported=imported, auto=auto)
        return self.select(pop, index, history, q, imported=imported)

    def generate(self, index: int, history: History | HistoryColumns, *, tilted_rounds_before: int,
                 previous_state: bytes | None = None, imported: Sequence[QueryRecord] = (),
                 seed_tag: str | None = None, auto: AutoAlphaInputs | None = None,
                 surrogate_fit: Any | None = None) -> Population:
        """Steps 1–4 of the module docstring: fit the surrogate and run the SMC chunks for round
        ``index``. ``seed_tag`` (the asynchronous pipeline's population number) gives a second
        population generated for the same round index its own random streams; ``surrogate_fit``:
        tilt with this ``SurrogateFit`` of the same results instead of fitting (the pipeline's
        conditioned fit, ``optimizer.campaign.rescoring``)."""
        cfg = self.config
        t0, started = time.perf_counter(), time.time()
        data = training_data(history, cfg, imported)
        tilted = data.n >= MIN_OBSERVATIONS and self.surrogate is not None
        surrogate = self.surrogate if tilted else None  # set exactly when tilted
        alpha = cfg.sampler.alpha_for_round(tilted_rounds_before)
        fit = None
        fit_s = 0.0
        if surrogate is not None:
            fit = surrogate_fit if surrogate_fit is not None else surrogate.fit(
                data, previous_state=previous_state)
            fit_s = time.perf_counter() - t0
        choice: AlphaChoice | None = None
        if fit is not None and surrogate is not None and cfg.sampler.alpha_auto:
            reward = fit.model.reward(beta=surrogate.config.beta)
            choice = choose_alpha(reward, cfg.sampler, auto.prior if auto else None,
                                  auto.gap if auto else None, campaign=cfg.name,
                                  feasibility=reward.log_feasibility if cfg.constraints else None)
            alpha = choice.alpha
        das = cfg.sampler.das_options()
        weights = chunk_weights(cfg, index, seed_tag) if tilted else [None] * cfg.workers.num_chunks
        chunks = [
            ChunkSpec(
                round_index=index, chunk=c,
                seed=derive_seed(cfg.seed, index, c, "smc" if seed_tag is None else f"smc/{seed_tag}"),
                num_particles=cfg.workers.particles_per_worker, alpha=alpha, das=das,
                surrogate_state=fit.state if fit is not None else None,
                surrogate=surrogate.config if surrogate is not None else None,
                X=data.X if tilted else None, Y=data.Y if tilted else None,
                Yvar=data.Yvar if tilted else None, die_flag=self.die_flag, weights=weights[c],
            )
            for c in range(cfg.workers.num_chunks)
        ]
        t1 = time.perf_counter()
        outs = self.pool.map("run_chunk", chunks, on_event=self._event)
        smc_s = time.perf_counter() - t1
        sampler = {
            "particles": int(sum(len(o.samples) for o in outs)), "chunks": len(outs),
            "ess": [o.ess.tolist() for o in outs],
            "lambdas": [o.lambdas.tolist() for o in outs],
            "log_normalizer": [o.log_normalizer for o in outs],
            "worker_seconds": [o.seconds for o in outs],
            "replacements": self.pool.replacements,
        }
        if choice is not None:
            sampler["alpha_auto"] = choice.to_json()
        if any(w is not None for w in weights):
            sampler["parego_weights"] = [list(w) for w in weights if w is not None]
        return Population(
            index=index, alpha=alpha, tilted=tilted,
            designs=np.concatenate([o.samples for o in outs]),
            features=np.concatenate([o.features for o in outs]),
            log_weights=np.concatenate([o.log_weights - math.log(len(outs)) for o in outs]),
            group=np.concatenate([np.full(len(o.samples), o.chunk) for o in outs]),
            particle=np.concatenate([np.arange(len(o.samples)) for o in outs]),
            family=ancestor_families(outs),
            fit=fit, sampler=sampler, unique_ancestors=unique_ancestors(outs),
            diagnostics=sampler_diagnostics(outs, alpha, tilted=tilted),
            timings={"fit_s": fit_s, "smc_s": smc_s}, observations=data.n,
            generated=(started, time.time()))

    def select(self, pop: Population, index: int, history: History | HistoryColumns, q: int, *,
               imported: Sequence[QueryRecord] = (), available: np.ndarray | None = None,
               previous_state: bytes | None = None, refit: bool | str = False,
               surrogate_fit: Any | None = None, pending: np.ndarray | None = None,
               num_mc_samples: int | None = None) -> RoundPlan:
        """Step 5: pick ``q`` of the population's ``available`` candidates (all by default) for
        round ``index`` against ``history``'s pending points; the round's candidates are the
        available ones. ``refit``: fit the surrogate on ``history`` again (warm-started from
        ``previous_state``, else from the population's fit) instead of using the population's
        fit — the asynchronous pipeline's re-scoring after new results; ``"auto"``: refit when
        ``history`` has a different number of results than the population was fitted on.
        ``surrogate_fit``: screen with this ``SurrogateFit`` instead (the pipeline's re-scoring surrogate,
        ``optimizer.campaign.rescoring``); ``pending``: designs to treat as pending besides the
        in-flight ones (batches already selected to go out first); ``num_mc_samples``: the
        acquisition's quasi-MC samples (default the surrogate config's; the pipeline's
        re-screening takes fewer)."""
        cfg = self.config
        t0 = time.perf_counter()
        data = training_data(history, cfg, imported)
        if pending is not None and len(pending):
            extra = np.asarray(pending, dtype=np.float64)
            data = replace(data, X_pending=np.concatenate([data.X_pending, extra])
                           if data.X_pending.ndim > 1 and len(data.X_pending) else extra)
        rows = np.arange(len(pop.designs)) if available is None else np.flatnonzero(available)
        designs, features, family = pop.designs[rows], pop.features[rows], pop.family[rows]
        own = pop.index == index  # the population was generated for this round
        fit, fit_s = pop.fit, float(pop.timings.get("fit_s", 0.0)) if own else 0.0
        if surrogate_fit is not None:
            fit, fit_s, refit = surrogate_fit, 0.0, False
        if refit == "auto":
            refit = data.n != pop.observations
        if refit and self.surrogate is not None and data.n >= MIN_OBSERVATIONS:
            warm = previous_state if previous_state is not None else (
                pop.fit.state if pop.fit is not None else None)
            fit = self.surrogate.fit(data, previous_state=warm)
            fit_s = time.perf_counter() - t0
        t2 = time.perf_counter()
        note = ""
        acq = mean = std = None
        if fit is not None and self.surrogate is not None:
            res = self.surrogate.screen(fit.model, designs, q, pending=data.X_pending,
                                        observed=data.X_failed,
                                        seed=derive_seed(cfg.seed, index, 0, "screen"),
                                        families=family, num_mc_samples=num_mc_samples)
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
                # a Pareto campaign's plain-prior round takes typical designs (k-means medoids):
                # maximin takes the prior's extremes, which dominate little hypervolume
                pick = typical_select if fit is None and is_pareto(cfg) else maximin_select
                extra = pick(space[free], k, seed=derive_seed(cfg.seed, index, 0, "spacefill"),
                             avoid=avoid)
                sel = list(sel) + [int(free[i]) for i in extra]
        screen_s = time.perf_counter() - t2
        candidates = [
            NewCandidate(
                design=designs[i], features=features[i], log_weight=float(pop.log_weights[r]),
                group=int(pop.group[r]), particle=int(pop.particle[r]),
                surrogate_mean=None if mean is None else float(mean[i]),
                surrogate_std=None if std is None else float(std[i]),
                acquisition=None if acq is None else _finite_or_none(acq[i]),
                excluded_reason=reasons[i] if reasons else None,
            )
            for i, r in enumerate(rows)
        ]
        summary = {
            "tilted": pop.tilted, "screen_note": note, "observations": data.n,
            "pending": int(len(data.X_pending)),
            **imported_counts(imported, cfg),
            **pop.sampler,
        }
        picked = np.asarray(sel, dtype=np.int64)
        summary["diagnostics"] = {**pop.diagnostics,
                                  **batch_figures(features[picked], family[picked])}
        if not own or available is not None:
            summary["population"] = {"round": pop.index, "size": len(pop.designs),
                                     "available": len(rows), "refit": bool(refit),
                                     "generated": list(pop.generated)}
        smc_s = float(pop.timings.get("smc_s", 0.0)) if own else 0.0
        before = float(sum(pop.timings.values())) if own and not refit else 0.0
        timings = {"fit_s": fit_s, "smc_s": smc_s, "screen_s": screen_s,
                   "total_s": before + time.perf_counter() - t0}
        return RoundPlan(index=index, alpha=pop.alpha, tilted=pop.tilted, candidates=candidates,
                         selected=[int(i) for i in sel],
                         surrogate_state=fit.summary if fit is not None else None,
                         surrogate_blob=fit.state if fit is not None else None,
                         timings=timings, summary=summary, unique_ancestors=pop.unique_ancestors,
                         population_rows=rows[np.asarray(sel, dtype=np.int64)])

    def _event(self, event: PoolEvent) -> None:
        if event.kind == "submit":
            crash_point("smc")
        if self.on_event is not None:
            self.on_event(event)


def unique_ancestors(outs: Sequence[ChunkResult]) -> int:
    """How many distinct founders the chunks' final particles descend from (``origin`` indexes a
    chunk's own initial particles, so the per-chunk counts add up)."""
    return int(sum(len(np.unique(np.asarray(o.origin).reshape(-1))) for o in outs))


def ancestor_families(outs: Sequence[ChunkResult]) -> np.ndarray:
    """One id per pooled particle for its (chunk, founder) family: particles resampled from the
    same initial particle of the same chunk share it (ids are dense, `0..F-1`)."""
    pairs = np.concatenate([
        np.stack([np.full(len(o.samples), o.chunk), np.asarray(o.origin).reshape(-1)], axis=1)
        for o in outs]) if outs else np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


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
