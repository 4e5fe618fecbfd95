"""A stored campaign's per-round diagnostics, for ``tiltloop status`` and the dashboard: what
each round's ``summary["diagnostics"]`` and ``summary["alpha_auto"]`` hold
(:mod:`optimizer.campaign.round_diagnostics`, :mod:`optimizer.campaign.auto_alpha`), plus the
wasted batches, which need the results (a round is wasted when every result is below the running
median of the earlier rounds' results).

    >>> d = campaign_round_diagnostics(storage, "demo", "y", "maximize")   # doctest: +SKIP
    >>> d["wasted_batches"], d["rounds"][-1]["kl"]                         # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.campaign.round_diagnostics import wasted_batches

#: The per-round fields copied from ``summary["diagnostics"]``.
DIAGNOSTIC_FIELDS = ("min_ess_fraction", "resampling_events", "kl", "batch_diversity",
                     "batch_families")


def round_rows(rounds: Any, results: dict[int, list[float]]) -> list[dict[str, Any]]:
    """One JSON-ready row per round: index, α (and whether ``alpha = "auto"`` chose it, with its
    estimated KL, the budget and the brake), the stored diagnostics (None where a round was
    written before they existed), unique ancestors and ``wasted`` (None: not judged).

    Args:
        rounds: ``RoundRecord`` list in index order.
        results: per round index, its primary-objective results, oriented so larger is better.
    """
    _, _, wasted = wasted_batches([(r.index, results.get(r.index, [])) for r in rounds])
    judged = _judged(rounds, results)
    out = []
    for r in rounds:
        s = r.summary or {}
        found, chosen = s.get("diagnostics"), s.get("alpha_auto")
        diag: dict[str, Any] = found if isinstance(found, dict) else {}
        auto: dict[str, Any] | None = chosen if isinstance(chosen, dict) else None
        row: dict[str, Any] = {"index": r.index, "tilted": bool(s.get("tilted")),
                               "alpha": _finite(r.alpha), "alpha_auto": auto is not None,
                               "unique_ancestors": r.unique_ancestors}
        row.update({k: diag.get(k) for k in DIAGNOSTIC_FIELDS})
        if auto is not None:
            row.update({"alpha_kl_estimate": auto.get("kl"), "kl_budget": auto.get("kl_budget"),
                        "brake": auto.get("brake"), "alpha_reason": auto.get("reason")})
        row["wasted"] = (r.index in wasted) if r.index in judged else None
        out.append(row)
    return out


def campaign_round_diagnostics(storage: Any, name: str, objective: str,
                               direction: str, constraints: Sequence[Any] = ()) -> dict[str, Any]:
    """Per-round rows (:func:`round_rows`) and the campaign's batch figures: wasted batches
    (of those judged), mean batch diversity and ancestor families over the rounds that store them.
    With ``constraints`` (``ConstraintConfig``), each row also counts its ``feasible`` and
    ``infeasible`` results. Reads the rounds and the query results (no designs)."""
    from optimizer.campaign.config_constraints import is_feasible

    sign = 1.0 if direction == "maximize" else -1.0
    results: dict[int, list[float]] = {}
    feasible: dict[int, list[bool]] = {}
    for p in storage.query_points(name):
        v = (p.values or {}).get(objective) if p.status == "succeeded" else None
        if v is not None and math.isfinite(v):
            results.setdefault(p.round_index, []).append(sign * float(v))
        if constraints and p.status == "succeeded":
            feasible.setdefault(p.round_index, []).append(bool(is_feasible(p.values, constraints)))
    rows = round_rows(storage.list_rounds(name), results)
    if constraints:
        for row in rows:
            flags = feasible.get(row["index"], [])
            row["feasible"], row["infeasible"] = sum(flags), len(flags) - sum(flags)
    return {**batch_figures(rows), "rounds": rows}


def batch_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``wasted_batches`` of ``judged_batches``, and the mean ``batch_diversity`` and
    ``batch_families`` over the rounds that store them, from :func:`round_rows`' rows."""
    div = [r["batch_diversity"] for r in rows if r["batch_diversity"] is not None]
    fam = [r["batch_families"] for r in rows if r["batch_families"] is not None]
    return {"wasted_batches": sum(1 for r in rows if r["wasted"]),
            "judged_batches": sum(1 for r in rows if r["wasted"] is not None),
            "batch_diversity": float(np.mean(div)) if div else None,
            "batch_families": float(np.mean(fam)) if fam else None}


def status_lines(diag: dict[str, Any]) -> list[str]:
    """Short lines for ``tiltloop status``: the last round's sampler figures, the batch figures
    of the campaign and, with several objectives, its Pareto front and hypervolume by round."""
    lines = []
    rows = [r for r in diag["rounds"] if r["min_ess_fraction"] is not None or r["kl"] is not None]
    if rows:
        r = rows[-1]
        alpha = "n/a" if r["alpha"] is None else f"{r['alpha']:.3g}"
        if r["alpha_auto"]:
            alpha += " (auto" + (", braked" if r.get("brake") else "") + ")"
        parts = [f"α={alpha}"]
        if r["kl"] is not None:
            budget = f" (budget {r['kl_budget']:g})" if r.get("kl_budget") is not None else ""
            parts.append(f"KL≈{r['kl']:.3g} nats{budget}")
        if r["min_ess_fraction"] is not None:
            parts.append(f"min ESS {100 * r['min_ess_fraction']:.0f}%")
        parts.append(f"{r['resampling_events']} resamplings")
        if r["unique_ancestors"] is not None:
            parts.append(f"{r['unique_ancestors']} ancestors")
        lines.append(f"  round {r['index']}: " + ", ".join(parts))
    if diag["judged_batches"] or diag["batch_diversity"] is not None:
        text = f"  batches: {diag['wasted_batches']}/{diag['judged_batches']} wasted"
        if diag["batch_diversity"] is not None:
            text += f", diversity {diag['batch_diversity']:.3g}"
        if diag["batch_families"] is not None:
            text += f", {diag['batch_families']:.3g} ancestor families per batch"
        lines.append(text)
    counted = [r for r in diag["rounds"] if r.get("feasible") is not None
               and r["feasible"] + r["infeasible"]]
    if counted:  # [[constraints]]: feasible results per round, the last eight rounds
        lines.append("  feasible results per round: " + ", ".join(
            f"r{r['index']} {r['feasible']}/{r['feasible'] + r['infeasible']}" for r in counted[-8:]))
    from optimizer.campaign.pareto_summary import pareto_lines

    return lines + pareto_lines(diag.get("pareto"))


def _judged(rounds: Any, results: dict[int, list[float]]) -> set[int]:
    seen, judged = False, set()
    for r in rounds:
        if results.get(r.index):
            if seen:
                judged.add(r.index)
            seen = True
    return judged


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
