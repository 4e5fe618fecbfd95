"""Write a campaign report: PNG plots plus one self-contained HTML page (images inlined).

    >>> paths = write_report(data, Path("tiltloop-report/demo"))   # doctest: +SKIP
    >>> paths.html                                                   # doctest: +SKIP
    PosixPath('tiltloop-report/demo/report.html')
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.campaign.failures import FailureGroup
from optimizer.report import plots, tables


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything a report shows, as plain arrays (one entry per oracle query, creation order).

    Attributes:
        campaign: campaign name.
        objective, direction: the primary objective and "maximize" / "minimize".
        values: `n`-dim array of results in the user's orientation; NaN = failed or in flight.
        rounds: `n`-dim int array, the round that produced each query.
        statuses: `n` query statuses.
        surrogate_mean, surrogate_std: `n`-dim arrays, the surrogate's prediction when the query
            was selected (NaN in rounds without a surrogate).
        ess_traces: ``(round, ESS/P per SMC step)`` per round.
        designs: `n x *design_shape` queried designs, or None.
        summary: key facts for the header table (JSON-able).
        keys: `n` query idempotency keys (the top-designs table names them; empty: no table).
        failures: failed / cancelled queries grouped by cause (:mod:`optimizer.campaign.failures`).
    """

    campaign: str
    objective: str
    direction: str
    values: np.ndarray
    rounds: np.ndarray
    statuses: tuple[str, ...]
    surrogate_mean: np.ndarray
    surrogate_std: np.ndarray
    ess_traces: list[tuple[int, np.ndarray]] = field(default_factory=list)
    designs: np.ndarray | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    failures: tuple[FailureGroup, ...] = ()


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written."""

    html: Path
    images: tuple[Path, ...]


def is_image_design(designs: np.ndarray | None) -> bool:
    """Image priors have `H x W` or `C x H x W` designs (C in 1..4)."""
    if designs is None or designs.ndim < 3 or len(designs) == 0:
        return False
    return designs.ndim == 3 or (designs.ndim == 4 and designs.shape[1] in (1, 2, 3, 4))


def write_report(data: ReportData, out_dir: Path) -> ReportPaths:
    """Draw every plot into ``out_dir`` and write ``report.html`` with the images inlined.

    Steps: 1. progress (every result + best so far vs queries); 2. per-round distributions;
    3. surrogate vs oracle on queried designs; 4. ESS traces; 5. a grid of queried designs when
    the designs are images. 6. the HTML page embeds them as base64, so it is one portable file,
    with the top designs (inline SVG thumbnails for images) and the failure causes as tables.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, Path]] = [
        ("Best so far and every result",
         plots.plot_progress(data.values, data.direction, data.objective, out / "progress.png")),
        ("Results per round",
         plots.plot_rounds(data.values, data.rounds, data.objective, out / "rounds.png")),
        ("Surrogate vs oracle (over-optimization check)",
         plots.plot_surrogate_vs_oracle(data.surrogate_mean, data.surrogate_std, data.values, data.objective,
                                        out / "surrogate_vs_oracle.png")),
        ("SMC effective sample size", plots.plot_ess(data.ess_traces, out / "ess.png")),
    ]
    if is_image_design(data.designs):
        assert data.designs is not None
        order = np.arange(len(data.designs))[::-1]
        sections.append(("Queried designs", plots.plot_design_grid(data.designs[order], data.values[order],
                                                                    out / "designs.png")))
    page = out / "report.html"
    page.write_text(_render(data, sections), encoding="utf-8")
    return ReportPaths(html=page, images=tuple(p for _, p in sections))


def _render(data: ReportData, sections: list[tuple[str, Path]]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in data.summary.items()
    )
    figs = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"/>'
        for title, p in sections
    )
    name = html.escape(data.campaign)
    extra = ""
    if data.keys:
        top = tables.top_designs_table(
            data.keys, data.rounds, data.values, data.surrogate_mean, data.surrogate_std,
            data.direction, data.objective, data.designs, images=is_image_design(data.designs))
        extra += f"<h2>Top designs ({html.escape(data.direction)} {html.escape(data.objective)})</h2>{top}"
    n_failed = sum(g.count for g in data.failures)
    extra += f"<h2>Failures by cause ({n_failed})</h2>{tables.failures_table(data.failures)}"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>tiltloop report: {name}</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:auto}"
        "th{text-align:left;padding-right:1em}img{max-width:100%}"
        "table.top td,table.failures td{padding:2px 8px;vertical-align:middle}"
        "table.top tr:nth-child(even),table.failures tr:nth-child(even){background:#f3f3f3}"
        "svg.thumb{display:block;border:1px solid #ccc}</style></head><body>"
        f"<h1>Campaign {name}</h1><table>{rows}</table>{extra}{figs}</body></html>"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
