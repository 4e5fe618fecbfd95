"""A stored campaign's Pareto front and hypervolume, for ``tiltloop status``, export and the report.

With two or more objectives: the succeeded queries whose values no other succeeded query
dominates (signed by each objective's direction), the hypervolume they dominate above the
reference point, and the hypervolume after each round (the front of every result of that round
and the earlier ones). One reference point serves every figure: each objective's configured
``reference`` where given, else inferred from all results so far (BoTorch's
``infer_reference_point``: the front's nadir less a tenth of its range,
``optimizer.surrogate.pareto.reference_point``), so the per-round figures are comparable with
each other, but an inferred reference moves as results arrive (give ``reference`` for figures
comparable across time and campaigns).

    >>> p = campaign_pareto(storage, "demo")            # doctest: +SKIP
    >>> p["hypervolume"], p["reference"], p["front"]    # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.surrogate.pareto import hypervolume, hypervolume_trace, pareto_mask, reference_point


def stored_references(config: dict[str, Any]) -> list[float | None]:
    """Each objective's ``reference`` in a stored config JSON (None where unset)."""
    out: list[float | None] = []
    for o in config.get("objectives") or []:
        r = o.get("reference") if isinstance(o, dict) else None
        out.append(float(r) if isinstance(r, int | float) and math.isfinite(r) else None)
    return out


def signed_matrix(objectives: Sequence[tuple[str, str]],
                  values: dict[str, list[float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """`n x m` signed values (NaN where missing) and the `m` signs, from per-objective columns."""
    signs = np.array([1.0 if d == "maximize" else -1.0 for _, d in objectives])
    cols = [np.array([np.nan if v is None else v for v in values[o]], dtype=float)
            for o, _ in objectives]
    return np.stack(cols, axis=1) * signs, signs


def pareto_summary(objectives: Sequence[tuple[str, str]], references: Sequence[float | None],
                   keys: Sequence[str], rounds: Sequence[int],
                   values: dict[str, list[float | None]]) -> dict[str, Any] | None:
    """The front, hypervolume and per-round hypervolume of queries in creation order (``keys``,
    their ``rounds`` and per-objective ``values``, None where there is no result); None with
    fewer than two objectives.

    Returns:
        ``objectives``, ``front`` (keys), ``front_values`` (per front key, the values in each
        objective's own units), ``results``, ``hypervolume`` (None before any result),
        ``reference`` (own units), ``reference_given`` (per objective) and ``by_round``
        (``[{"round", "results", "hypervolume"}]``, cumulative).
    """
    if len(objectives) < 2:
        return None
    V, signs = signed_matrix(objectives, values)
    ok = np.flatnonzero(np.all(np.isfinite(V), axis=1))
    refs = list(references) + [None] * (len(objectives) - len(references))
    given = [None if r is None else float(r) * s for r, s in zip(refs, signs, strict=False)]
    out: dict[str, Any] = {"objectives": [o for o, _ in objectives], "front": [],
                           "front_values": [], "results": int(len(ok)), "hypervolume": None,
                           "reference": None, "reference_given": [r is not None for r in refs],
                           "by_round": []}
    if not len(ok):
        return out
    front = ok[pareto_mask(V[ok])]
    ref = reference_point(V[ok], given).numpy()
    out["front"] = [keys[i] for i in front]
    out["front_values"] = [[float(v) for v in V[i] * signs] for i in front]
    out["hypervolume"] = hypervolume(V[ok], ref)
    out["reference"] = [float(v) for v in ref * signs]
    # cumulative by round: the queries of rounds <= r (creation order is round order)
    r_ok = np.asarray(rounds)[ok]
    ends = [int(np.searchsorted(r_ok, r, side="right")) for r in sorted(set(r_ok.tolist()))]
    hv = hypervolume_trace(V[ok], ref, ends)
    out["by_round"] = [{"round": int(r_ok[e - 1]), "results": e, "hypervolume": h}
                       for e, h in zip(ends, hv, strict=True)]
    return out


def campaign_pareto(storage: Any, name: str) -> dict[str, Any] | None:
    """:func:`pareto_summary` of stored campaign ``name`` (reads its query values, no designs);
    with ``[[constraints]]`` only feasible results count (an infeasible design is on no front)."""
    from optimizer.campaign.config_constraints import is_feasible, stored_constraints
    from optimizer.campaign.export import stored_objectives

    objectives = stored_objectives(storage, name)
    if len(objectives) < 2:
        return None
    config = storage.load_campaign(name).config
    refs = stored_references(config)
    cons = stored_constraints(config)
    pts = sorted(storage.query_points(name), key=lambda p: p.round_index)
    ok = [p.status == "succeeded" and (not cons or bool(is_feasible(p.values, cons))) for p in pts]
    values = {o: [(p.values or {}).get(o) if good else None for p, good in zip(pts, ok, strict=True)]
              for o, _ in objectives}
    return pareto_summary(objectives, refs, [p.key for p in pts], [p.round_index for p in pts],
                          values)


def pareto_lines(p: dict[str, Any] | None, *, last_rounds: int = 6) -> list[str]:
    """Two or three short lines for ``tiltloop status``: the front's size, the hypervolume with
    its reference point, and the hypervolume of the last rounds."""
    if not p:
        return []
    names = " × ".join(p["objectives"])
    if p["hypervolume"] is None:
        return [f"  Pareto ({names}): no results yet"]
    ref = ", ".join(f"{o}={v:.4g}{'' if g else ' (inferred)'}" for o, v, g in
                    zip(p["objectives"], p["reference"], p["reference_given"], strict=True))
    lines = [f"  Pareto front ({names}): {len(p['front'])} of {p['results']} results; "
             f"hypervolume {p['hypervolume']:.6g} (reference {ref})"]
    rows = p["by_round"][-last_rounds:]
    if len(p["by_round"]) > 1:
        lines.append("  hypervolume by round: " + ", ".join(
            f"r{r['round']} {r['hypervolume']:.4g}" for r in rows))
    for key, vals in list(zip(p["front"], p["front_values"], strict=True))[:5]:
        lines.append(f"    {key}: " + ", ".join(f"{o}={v:.5g}" for o, v in
                                               zip(p["objectives"], vals, strict=True)))
    if len(p["front"]) > 5:
        lines.append(f"    ... {len(p['front']) - 5} more on the front (`tiltloop export` marks them)")
    return lines
