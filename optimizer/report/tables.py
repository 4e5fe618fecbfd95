"""HTML tables of a report: the top designs and the failure summary (plain strings, escaped).

Image designs get an inline SVG thumbnail (one ``<rect>`` per pixel; no external file, no
script), so the page stays one self-contained file and its PNG plots stay the only base64 images.

>>> rows = top_rows(np.array([1.0, np.nan, 3.0]), "maximize", k=2)
>>> rows.tolist()
[2, 0]
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from optimizer.campaign.failures import FailureGroup

#: Rows in the top-designs table.
TOP_K = 10
#: Largest image side drawn as a thumbnail (one SVG rect per pixel).
MAX_THUMB_SIDE = 64


def top_rows(values: np.ndarray, direction: str, k: int = TOP_K) -> np.ndarray:
    """Indices of the ``k`` best finite values (``maximize``: largest first; ties: earliest)."""
    v = np.asarray(values, dtype=float)
    ok = np.flatnonzero(~np.isnan(v))
    sign = 1.0 if direction == "maximize" else -1.0
    order = ok[np.argsort(-sign * v[ok], kind="stable")]
    return order[:k]


def thumbnail_svg(design: np.ndarray, size: int = 48) -> str:
    """An `H x W` (gray) or `C x H x W` (first channel; RGB when C == 3) design as inline SVG,
    scaled to [0, 1] per image like the design grid; empty string when it is not an image."""
    d = np.asarray(design, dtype=float)
    if d.ndim == 3 and d.shape[0] in (1, 2, 3, 4):
        d = d.transpose(1, 2, 0) if d.shape[0] == 3 else d[0]
    if d.ndim not in (2, 3) or max(d.shape[:2]) > MAX_THUMB_SIDE or d.size == 0:
        return ""
    lo, hi = float(d.min()), float(d.max())
    px = np.clip(np.round(255 * (d - lo) / (hi - lo + 1e-12)), 0, 255).astype(int)
    h, w = px.shape[:2]
    rects = []
    for i in range(h):
        for j in range(w):
            rgb = px[i, j] if px.ndim == 3 else (px[i, j],) * 3
            rects.append(f'<rect x="{j}" y="{i}" width="1" height="1" '
                         f'fill="#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x}"/>')
    return (f'<svg class="thumb" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
            f'width="{size}" height="{size * h // w}" shape-rendering="crispEdges">'
            f'{"".join(rects)}</svg>')


def top_designs_table(
    keys: Sequence[str],
    rounds: np.ndarray,
    values: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    direction: str,
    objective: str,
    designs: np.ndarray | None = None,
    *,
    images: bool = False,
    k: int = TOP_K,
) -> str:
    """``<table>`` of the ``k`` best succeeded queries: rank, key, round, value, surrogate mean ± std
    at selection (in the objective's orientation) and, with ``images``, a thumbnail."""
    picked = top_rows(values, direction, k)
    if not len(picked):
        return "<p>no succeeded queries yet</p>"
    head = ["#", "query", "round", html.escape(objective), "surrogate at selection"]
    if images:
        head.append("design")
    lines = ["<table class='top'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for rank, i in enumerate(picked, 1):
        m, s = float(mean[i]), float(std[i])
        pred = "—" if np.isnan(m) else f"{m:.4g} ± {s:.2g}"
        cells = [str(rank), html.escape(keys[i]), str(int(rounds[i])), f"{float(values[i]):.6g}",
                 pred]
        if images and designs is not None:
            cells.append(thumbnail_svg(designs[i]))
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def failures_table(groups: Sequence[FailureGroup], limit: int = 20) -> str:
    """``<table>`` of failure causes, most frequent first, with one example query each."""
    if not groups:
        return "<p>no failed queries</p>"
    lines = ["<table class='failures'><tr><th>count</th><th>cause</th>"
             "<th>example query</th></tr>"]
    for g in groups[:limit]:
        lines.append(f"<tr><td>{g.count}×</td><td>{html.escape(g.cause)}</td>"
                     f"<td title='{html.escape(g.example, quote=True)}'>"
                     f"{html.escape(g.example_key)}</td></tr>")
    rest = groups[limit:]
    if rest:
        lines.append(f"<tr><td>{sum(g.count for g in rest)}×</td>"
                     f"<td>… {len(rest)} more causes</td><td></td></tr>")
    return "".join(lines) + "</table>"
