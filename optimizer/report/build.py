"""``tiltloop report NAME``: read a campaign from storage into :class:`ReportData` and write it.

    >>> with Storage.open(url) as st:                        # doctest: +SKIP
    ...     paths = build_report(st, "demo", Path("tiltloop-report/demo"))
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.failures import group_failures
from optimizer.report.html import ReportData, ReportPaths, write_report
from storage import Storage


def load_report_data(storage: Storage, name: str) -> ReportData:
    """Every query of campaign ``name`` (creation order) with the numbers the plots need."""
    rec = storage.load_campaign(name)
    config = parse_config(rec.config, f"the config stored with campaign {name!r}")
    obj = config.primary_objective
    sign = 1.0 if obj.direction == "maximize" else -1.0
    queries = storage.list_queries(name, with_design=True)
    rounds = storage.list_rounds(name)
    predicted: dict[str, tuple[float, float]] = {}
    ess_traces: list[tuple[int, np.ndarray]] = []
    P = config.workers.particles_per_worker
    for r in rounds:
        for c in storage.list_candidates(name, r.index):
            if c.query_key is not None and c.surrogate_mean is not None:
                # the surrogate maximizes: flip back to the user's orientation
                predicted[c.query_key] = (sign * c.surrogate_mean, c.surrogate_std or 0.0)
        chunks = (r.summary or {}).get("ess") or []
        if chunks:
            ess = np.mean(np.asarray(chunks, dtype=float), axis=0) / P
            ess_traces.append((r.index, ess))
    values = np.array([(q.values or {}).get(obj.name, np.nan) if q.status == "succeeded" else np.nan
                       for q in queries], dtype=float)
    mean = np.array([predicted.get(q.key, (np.nan, np.nan))[0] for q in queries], dtype=float)
    std = np.array([predicted.get(q.key, (np.nan, np.nan))[1] for q in queries], dtype=float)
    stored = [q.design for q in queries if q.design is not None]
    designs = np.stack(stored) if queries and len(stored) == len(queries) else None
    counts = storage.query_counts(name)
    finite = values[~np.isnan(values)]
    best = None if not len(finite) else float(finite.max() if sign > 0 else finite.min())
    summary = {
        "campaign": name, "status": rec.status, "prior": config.prior.name,
        "oracle": config.oracle.kind, "objective": f"{obj.name} ({obj.direction})",
        "rounds": len(rounds), "queries": f"{len(queries)} of budget {config.budget.total}",
        "succeeded": counts["succeeded"], "failed": counts["failed"] + counts["cancelled"],
        "in flight": counts["pending"] + counts["dispatched"] + counts["running"],
        "best": "none yet" if best is None else best,
    }
    return ReportData(
        campaign=name, objective=obj.name, direction=obj.direction, values=values,
        rounds=np.array([q.round_index for q in queries], dtype=int),
        statuses=tuple(q.status for q in queries), surrogate_mean=mean, surrogate_std=std,
        ess_traces=ess_traces, designs=designs, summary=summary,
        keys=tuple(q.key for q in queries),
        failures=tuple(group_failures((q.key, q.error) for q in queries
                                      if q.status in ("failed", "cancelled"))),
    )


def build_report(storage: Storage, name: str, out_dir: Path) -> ReportPaths:
    """Load campaign ``name`` and write its plots and HTML page into ``out_dir``."""
    return write_report(load_report_data(storage, name), Path(out_dir))
