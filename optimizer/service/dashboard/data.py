"""What the dashboard's views draw, read from storage in one call: :func:`campaign_bundle`.

The live page (``GET /v1/campaigns/{name}/dashboard``) and the self-contained HTML file
(``tiltloop report``, :mod:`optimizer.service.dashboard.report_html`) embed the same bundle, so
each view has one implementation (its JS module) and one data source.

- ``points``: the oracle queries in creation order as columns (key, round, status, each
  objective's value, the surrogate's prediction in the primary objective's orientation, and with
  ``[[constraints]]`` whether each result is ``feasible``; the best is the best feasible); no
  designs. With ``after`` (an event id: the ``cursor`` of the previous answer) only the queries
  that changed since come (``delta: true``): those named by ``query.transition`` events and those
  of newly recorded rounds, in creation order; the page merges them by key (a known key is
  updated in place, a new one appended). A discarded round, too many events or an unknown cursor
  gives the full answer (``delta: false``) instead;
- ``rounds``: (in a delta: only the rounds recorded or updated since, or with a changed query;
  the page replaces them by index) per round α, the ESS fraction and λ traces (mean over the
  workers' chunks, per SMC step), log-normalizer, unique ancestors (stored since revision
  0007), timings, the results' box statistics and best, the surrogate-vs-oracle gap (see
  :func:`gap_warning`), and ``diagnostics`` (``optimizer.campaign.round_summary.round_rows``:
  min ESS fraction, resampling events, estimated KL, α auto's choice, batch diversity and
  families, wasted); ``batches``: the campaign's wasted batches and mean batch diversity;
- ``pareto``: with two or more objectives, the non-dominated succeeded queries and the
  hypervolume over queries (BoTorch's box decomposition, any number of objectives) above the
  reference point ``tiltloop status`` uses (``optimizer.campaign.pareto_summary``);
- ``top``: the best succeeded designs with their values and designs (table and gallery);
- ``failures`` grouped by cause; ``config``: the current config and its versions, redacted by
  :func:`redact_config`; ``campaign``: the service's campaign view (its raw config removed).

Everything but ``points`` and ``rounds`` is small and always whole.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.campaign.config_constraints import ConstraintConfig, is_feasible, stored_constraints
from optimizer.campaign.export import stored_objectives
from optimizer.campaign.failures import group_failures
from optimizer.campaign.pareto_summary import stored_references
from optimizer.campaign.round_summary import batch_figures, round_rows
from optimizer.surrogate.pareto import reference_point
from storage import QueryPoint, Storage

#: Keys whose values never leave the server (any nesting level, case-insensitive).
SECRET_KEY = re.compile(r"token|secret|passw|api[_-]?key|credential|authori[sz]ation|cookie|"
                        r"private[_-]?key", re.IGNORECASE)
#: A URL's password (``scheme://user:password@host``).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+(?P<tail>@)",
                           re.IGNORECASE)
REDACTED = "***"
#: Designs sent for the table and the gallery.
DEFAULT_TOP = 50
#: Points of the hypervolume curve at most (it is recomputed at each).
HV_POINTS = 200
#: More events than this since the cursor: the full answer is cheaper than a delta.
MAX_DELTA_EVENTS = 5000


def redact_config(value: Any) -> Any:
    """``value`` with every field named like a secret replaced by ``***``, and any password
    inside a URL string too (the stored config already redacts the storage URL's)."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEY.search(k) and v not in (None, "")
                    else redact_config(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['tail']}", value)
    return value


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _mean_trace(chunks: Any) -> list[float | None] | None:
    """The per-step mean over the workers' chunks (chunks may differ in length: truncate)."""
    if not isinstance(chunks, list) or not chunks or not all(isinstance(c, list) and c
                                                              for c in chunks):
        return None
    n = min(len(c) for c in chunks)
    arr = np.asarray([c[:n] for c in chunks], dtype=float)
    return [_finite(v) for v in arr.mean(axis=0).tolist()]


def gap_warning(gaps: list[float | None]) -> str | None:
    """A warning when the surrogate's over-estimate of the oracle grows (over-optimization).

    ``gaps``: per round, the mean of (prediction − result) over its results, oriented so that
    positive means the surrogate promised more than the oracle gave. Warns when the latest of at
    least three rounds with results is positive and either the last three rose strictly, or the
    latest exceeds twice the median of the earlier ones by more than 0 (a jump)."""
    seen = [g for g in gaps if g is not None]
    if len(seen) < 3 or seen[-1] <= 0:
        return None
    a, b, c = seen[-3:]
    if a < b < c:
        return (f"the surrogate's over-estimate grew three rounds in a row ({a:.3g} → {b:.3g} → "
                f"{c:.3g}): the sampler may be exploiting surrogate errors; consider a larger α")
    earlier = float(np.median(seen[:-1]))
    if earlier > 0 and c > 2 * earlier:
        return (f"the surrogate's over-estimate in the latest round ({c:.3g}) is more than twice "
                f"the earlier median ({earlier:.3g}); consider a larger α")
    return None


def pareto_mask(y: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``y`` (N x M, every objective to be maximized)."""
    n = len(y)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        dominated = np.all(y >= y[i], axis=1) & np.any(y > y[i], axis=1)
        if dominated.any():
            keep[i] = False
    return keep


def hypervolume(y: np.ndarray, ref: np.ndarray) -> float:
    """The volume dominated by the rows of ``y`` (N x M, every objective maximized) above the
    reference point ``ref`` (M), for any M >= 2: BoTorch's ``DominatedPartitioning``."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

    pts = np.asarray(y, dtype=float)
    pts = pts[np.all(pts > ref, axis=1)]
    if not len(pts):
        return 0.0
    part = DominatedPartitioning(ref_point=torch.as_tensor(ref, dtype=torch.float64),
                                 Y=torch.as_tensor(pts, dtype=torch.float64))
    return float(part.compute_hypervolume())


def _pareto(objectives: list[tuple[str, str]], keys: list[str],
            values: dict[str, list[float | None]],
            references: Sequence[float | None] = ()) -> dict[str, Any] | None:
    if len(objectives) < 2:
        return None
    cols = [np.array([np.nan if v is None else v for v in values[o]], dtype=float)
            for o, _ in objectives]
    signs = np.array([1.0 if d == "maximize" else -1.0 for _, d in objectives])
    y_all = np.stack(cols, axis=1) * signs  # maximized
    ok = np.flatnonzero(np.all(np.isfinite(y_all), axis=1))
    front = ok[pareto_mask(y_all[ok])] if len(ok) else ok
    out: dict[str, Any] = {"objectives": [o for o, _ in objectives],
                           "front": [keys[i] for i in front], "hypervolume": None}
    if len(ok):
        # the objectives' configured references, the rest inferred as `tiltloop status` does
        given = [None if r is None else r * s for r, s in zip(
            list(references) + [None] * len(objectives), signs, strict=False)]
        ref = reference_point(y_all[ok], given).numpy()
        ticks = np.unique(np.linspace(1, len(y_all), num=min(HV_POINTS, len(y_all))).astype(int))
        hv, current, done = [], np.empty((0, len(objectives))), 0
        for t in ticks:  # the front of the first t queries, grown from the previous tick's
            new = ok[(ok >= done) & (ok < t)]
            if len(new):
                current = np.concatenate([current, y_all[new]])
                current = current[pareto_mask(current)]
            done = t
            hv.append(hypervolume(current, ref) if len(current) else 0.0)
        out["hypervolume"] = {"queries": ticks.tolist(), "value": hv,
                              "reference": (ref * signs).tolist()}
    return out


def _columns(rows: Sequence[QueryPoint], objectives: list[tuple[str, str]],
             sign: float, constraints: Sequence[ConstraintConfig] = ()) -> dict[str, Any]:
    """The ``points`` columns of ``rows`` (the surrogate's mean in the primary objective's
    orientation: the stored one maximizes); with ``constraints``, ``feasible`` per point (None
    without a result)."""
    extra = {"feasible": [is_feasible(r.values, constraints) if r.status == "succeeded" else None
                          for r in rows]} if constraints else {}
    return {**extra,
        "key": [r.key for r in rows], "round": [r.round_index for r in rows],
        "status": [r.status for r in rows],
        "values": {o: [_finite((r.values or {}).get(o)) if r.status == "succeeded" else None
                       for r in rows] for o, _ in objectives},
        "surrogate_mean": [None if r.surrogate_mean is None else _finite(sign * r.surrogate_mean)
                           for r in rows],
        "surrogate_std": [_finite(r.surrogate_std) for r in rows]}


def _changed(storage: Storage, name: str,
             after: int) -> tuple[set[str], set[int], set[int], int] | None:
    """Keys, new rounds and updated rounds named by the events after id ``after``, and the last
    id read; None when only a full answer is right (a round discarded, too many events)."""
    events = storage.list_events(name, after_id=after, limit=MAX_DELTA_EVENTS + 1)
    if len(events) > MAX_DELTA_EVENTS:
        return None
    keys: set[str] = set()
    rounds: set[int] = set()
    updated: set[int] = set()
    for e in events:
        if e.kind == "round.discarded":
            return None
        if e.kind == "query.transition" and isinstance(e.payload.get("key"), str):
            keys.add(e.payload["key"])
        elif e.kind == "round.recorded" and isinstance(e.payload.get("round"), int):
            rounds.add(e.payload["round"])
        elif e.kind == "round.updated" and isinstance(e.payload.get("round"), int):
            updated.add(e.payload["round"])
    return keys, rounds, updated, max((e.id for e in events), default=after)


def _box(values: list[float]) -> dict[str, float]:
    """Box statistics of one round's results: quartiles and Tukey's whiskers (1.5 IQR)."""
    v = np.sort(np.asarray(values, dtype=float))
    q1, med, q3 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    iqr = q3 - q1
    return {"q1": q1, "median": med, "q3": q3, "n": int(len(v)), "mean": float(v.mean()),
            "lowerfence": float(v[v >= q1 - 1.5 * iqr].min()),
            "upperfence": float(v[v <= q3 + 1.5 * iqr].max())}


def campaign_bundle(storage: Storage, name: str, *, top: int = DEFAULT_TOP,
                    after: int | None = None) -> dict[str, Any]:
    """Everything the campaign page draws (see the module docstring); JSON-ready.

    Args:
        after: the ``cursor`` of a previous answer: only the points changed since are sent.

    Raises:
        NotFound: no campaign ``name`` (the routes turn it into 404).
    """
    from optimizer.service.views import detail

    cursor = storage.last_event_id(name)  # first: a change made while reading is sent again
    changed = None
    if after is not None and 0 <= after <= cursor:
        changed = _changed(storage, name, after)
        if changed is not None:
            cursor = max(cursor, changed[3])
    objectives = stored_objectives(storage, name)
    primary, direction = objectives[0]
    sign = 1.0 if direction == "maximize" else -1.0
    rows = storage.query_points(name)
    keys = [r.key for r in rows]
    cons = stored_constraints(storage.load_campaign(name).config)
    cols = _columns(rows, objectives, sign, cons)
    values: dict[str, list[float | None]] = cols["values"]
    touched: set[int] | None = None  # the rounds whose entry may differ (None: all)
    if changed is None:
        points = cols
    else:
        keep = [i for i, r in enumerate(rows) if r.key in changed[0] or r.round_index in changed[1]]
        points = _columns([rows[i] for i in keep], objectives, sign, cons)
        touched = {rows[i].round_index for i in keep} | changed[1] | changed[2]

    best: tuple[float | None, str | None] = (None, None)
    by_round: dict[int, list[tuple[float, float | None]]] = {}
    feasible = cols.get("feasible") or [None] * len(keys)
    for r, v, m, k, ok in zip(cols["round"], values[primary], cols["surrogate_mean"], keys, feasible):
        if v is not None:
            by_round.setdefault(r, []).append((v, m))
            if ok is not False and (best[0] is None or sign * v > sign * best[0]):  # best feasible
                best = (v, k)
    campaign = detail(storage, name, best=best).model_dump(mode="json")
    campaign.pop("config", None)  # the raw stored config: served redacted below instead
    rounds: list[dict[str, Any]] = []
    records = storage.list_rounds(name)
    diag = {d["index"]: d for d in round_rows(
        records, {i: [sign * v for v, _ in res] for i, res in by_round.items()})}
    for rec in records:
        s = rec.summary or {}
        results = by_round.get(rec.index, [])
        diffs = [sign * (m - v) for v, m in results if m is not None]
        rounds.append({
            "index": rec.index, "status": rec.status, "alpha": _finite(rec.alpha),
            "candidates": rec.num_candidates, "selected": len(rec.selected),
            "particles": s.get("particles"), "tilted": s.get("tilted"),
            "ess": _ess_fraction(s), "lambdas": _mean_trace(s.get("lambdas")),
            "log_normalizer": _finite(float(np.mean(s["log_normalizer"])))
            if isinstance(s.get("log_normalizer"), list) and s["log_normalizer"] else None,
            "unique_ancestors": rec.unique_ancestors,
            "timings": rec.timings, "results": len(results),
            "box": _box([v for v, _ in results]) if results else None,
            "best": (max if sign > 0 else min)(v for v, _ in results) if results else None,
            "gap": float(np.mean(diffs)) if diffs else None,
            "abs_gap": float(np.mean(np.abs(diffs))) if diffs else None,
            "diagnostics": {k: v for k, v in diag[rec.index].items()
                            if k not in ("index", "tilted", "alpha", "unique_ancestors")},
            "created_at": rec.created_at.isoformat()})

    failures = group_failures((r.key, r.error) for r in rows if r.status in ("failed", "cancelled"))
    # the top designs as load_export_rows(top=…) ranks them (stable: ties keep creation order)
    ranked = sorted((i for i, v in enumerate(values[primary]) if v is not None),
                    key=lambda i: (feasible[i] is False,  # feasible first, as the export ranks
                                   -sign * values[primary][i]))[:top]  # type: ignore[operator]
    designs = {q.key: np.asarray(q.design) for q in storage.get_queries(
        [keys[i] for i in ranked], with_design=True) if q.design is not None}
    current = storage.load_campaign(name).config
    return {
        "name": name, "cursor": cursor, "delta": changed is not None,
        "objectives": [{"name": o, "direction": d} for o, d in objectives],
        "constraints": [c.model_dump() for c in cons],
        "primary": primary, "direction": direction, "campaign": campaign,
        "points": points,
        "rounds": rounds if touched is None else [r for r in rounds if r["index"] in touched],
        "gap_warning": gap_warning([r["gap"] for r in rounds]),
        "batches": batch_figures(list(diag.values())),
        # an infeasible result is on no front ([[constraints]]): its values are left out
        "pareto": _pareto(objectives, keys, {o: [None if feasible[i] is False else v
                                                 for i, v in enumerate(vs)]
                                             for o, vs in values.items()},
                          stored_references(current)),
        "top": [{"key": keys[i], "round": rows[i].round_index, "value": values[primary][i],
                 "values": rows[i].values or {}, "feasible": feasible[i],
                 "surrogate_mean": cols["surrogate_mean"][i],
                 "surrogate_std": cols["surrogate_std"][i],
                 "shape": list(designs[keys[i]].shape),
                 "design": designs[keys[i]].astype(float).reshape(-1).tolist()}
                for i in ranked if keys[i] in designs],
        "failures": [{"cause": g.cause, "count": g.count, "example_key": g.example_key}
                     for g in failures],
        "config": {"current": redact_config(current),
                   "version": campaign.get("config_version"),
                   "versions": [{"version": v.version, "note": v.note,
                                 "created_at": v.created_at.isoformat(),
                                 "config": redact_config(v.config)}
                                for v in storage.config_versions(name)]},
    }


def _ess_fraction(summary: dict[str, Any]) -> list[float | None] | None:
    """The ESS per SMC step as a fraction of each chunk's particles (mean over chunks)."""
    trace = _mean_trace(summary.get("ess"))
    particles, chunks = summary.get("particles"), summary.get("chunks")
    if trace is None or not isinstance(particles, int) or not isinstance(chunks, int) or not chunks:
        return trace
    per_chunk = particles / chunks
    return [None if v is None else v / per_chunk for v in trace]
