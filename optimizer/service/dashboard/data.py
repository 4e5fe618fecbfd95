"""What the dashboard's views draw, read from storage in one call: :func:`campaign_bundle`.

The live page (``GET /v1/campaigns/{name}/dashboard``) and the self-contained HTML report
(:mod:`optimizer.service.dashboard.report_html`) embed the same bundle, so each view has one
implementation (its JS module) and one data source.

- ``points``: every oracle query in creation order as columns (key, round, status, each objective's
  value, the surrogate's prediction in the primary objective's orientation); no designs;
- ``rounds``: per round α, the ESS fraction and λ traces (mean over the workers' chunks, per SMC
  step), log-normalizer, unique ancestors where a round stored them, timings, results, and the
  surrogate-vs-oracle gap (see :func:`gap_warning`);
- ``pareto``: with two or more objectives, the non-dominated succeeded queries and (two
  objectives) the hypervolume over queries;
- ``top``: the best succeeded designs with their values and designs (table and gallery);
- ``failures`` grouped by cause; ``config``: the current config and its versions, redacted by
  :func:`redact_config`; ``campaign``: the service's campaign view (its raw config removed).
"""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from optimizer.campaign.export import load_export_rows, stored_objectives
from optimizer.campaign.failures import group_failures
from storage import Storage

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


def hypervolume_2d(y: np.ndarray, ref: np.ndarray) -> float:
    """The area dominated by ``y`` (N x 2, maximized) above the reference point ``ref``."""
    pts = y[np.all(y > ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.argsort(-pts[:, 0])]
    area, best_y = 0.0, float(ref[1])
    for x0, x1 in pts:
        if x1 > best_y:
            area += (x0 - ref[0]) * (x1 - best_y)
            best_y = float(x1)
    return float(area)


def _pareto(objectives: list[tuple[str, str]], keys: list[str],
            values: dict[str, list[float | None]]) -> dict[str, Any] | None:
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
    if len(objectives) == 2 and len(ok):
        ref = y_all[ok].min(axis=0) - 1e-9
        ticks = np.unique(np.linspace(1, len(y_all), num=min(HV_POINTS, len(y_all))).astype(int))
        hv = []
        for t in ticks:
            sub = ok[ok < t]
            hv.append(hypervolume_2d(y_all[sub], ref) if len(sub) else 0.0)
        out["hypervolume"] = {"queries": ticks.tolist(), "value": hv,
                              "reference": (ref * signs).tolist()}
    return out


def campaign_bundle(storage: Storage, name: str, *, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Everything the campaign page draws (see the module docstring); JSON-ready.

    Raises:
        NotFound: no campaign ``name`` (the routes turn it into 404).
    """
    from optimizer.service.views import detail

    campaign = detail(storage, name).model_dump(mode="json")
    campaign.pop("config", None)  # the raw stored config: served redacted below instead
    objectives = stored_objectives(storage, name)
    primary, direction = objectives[0]
    sign = 1.0 if direction == "maximize" else -1.0
    rows = load_export_rows(storage, name, objectives=objectives)
    keys = [r.key for r in rows]
    values: dict[str, list[float | None]] = {
        o: [_finite((r.values or {}).get(o)) if r.status == "succeeded" else None for r in rows]
        for o, _ in objectives}
    means = [_finite(r.surrogate_mean) for r in rows]
    points: dict[str, Any] = {
        "key": keys, "round": [r.round for r in rows], "status": [r.status for r in rows],
        "values": values, "surrogate_mean": means,
        "surrogate_std": [_finite(r.surrogate_std) for r in rows]}

    by_round: dict[int, list[tuple[float, float | None]]] = {}
    for r, v, m in zip((row.round for row in rows), values[primary], means):
        if v is not None:
            by_round.setdefault(r, []).append((v, m))
    rounds: list[dict[str, Any]] = []
    for rec in storage.list_rounds(name):
        s = rec.summary or {}
        results = by_round.get(rec.index, [])
        diffs = [sign * (m - v) for v, m in results if m is not None]
        ancestors = s.get("unique_ancestors")
        if isinstance(ancestors, list):  # one count per chunk: their sum (chunks are disjoint)
            ancestors = int(sum(a for a in ancestors if isinstance(a, (int, float))))
        rounds.append({
            "index": rec.index, "status": rec.status, "alpha": _finite(rec.alpha),
            "candidates": rec.num_candidates, "selected": len(rec.selected),
            "particles": s.get("particles"), "tilted": s.get("tilted"),
            "ess": _ess_fraction(s), "lambdas": _mean_trace(s.get("lambdas")),
            "log_normalizer": _finite(float(np.mean(s["log_normalizer"])))
            if isinstance(s.get("log_normalizer"), list) and s["log_normalizer"] else None,
            "unique_ancestors": ancestors if isinstance(ancestors, (int, float)) else None,
            "timings": rec.timings, "results": len(results),
            "best": (max if sign > 0 else min)(v for v, _ in results) if results else None,
            "gap": float(np.mean(diffs)) if diffs else None,
            "abs_gap": float(np.mean(np.abs(diffs))) if diffs else None,
            "created_at": rec.created_at.isoformat()})

    failures = group_failures((r.key, r.error) for r in rows if r.status in ("failed", "cancelled"))
    # the top designs as load_export_rows(top=…) ranks them (stable: ties keep creation order)
    ranked = [r for r in rows if r.status == "succeeded" and (r.values or {}).get(primary)
              is not None]
    ranked.sort(key=lambda r: -sign * r.values[primary])  # type: ignore[index]
    top_rows = ranked[:top]
    current = storage.load_campaign(name).config
    return {
        "name": name, "objectives": [{"name": o, "direction": d} for o, d in objectives],
        "primary": primary, "direction": direction, "campaign": campaign,
        "points": points, "rounds": rounds,
        "gap_warning": gap_warning([r["gap"] for r in rounds]),
        "pareto": _pareto(objectives, keys, values),
        "top": [{"key": r.key, "round": r.round, "value": (r.values or {}).get(primary),
                 "values": r.values or {}, "surrogate_mean": _finite(r.surrogate_mean),
                 "surrogate_std": _finite(r.surrogate_std), "shape": list(r.design.shape),
                 "design": np.asarray(r.design, dtype=float).reshape(-1).tolist()}
                for r in top_rows],
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
