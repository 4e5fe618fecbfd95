"""Report plots from plain arrays (matplotlib, Agg backend; no storage, no torch).

Each function draws one figure into a PNG file and returns its path. Values are in the user's
orientation (``direction`` says whether larger or smaller is better); failed queries are NaN
and are skipped.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: a campaign server has no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def best_so_far(values: np.ndarray, direction: str) -> np.ndarray:
    """Running best over queries in order, ignoring NaN (failed) entries; NaN until the first result.

    >>> best_so_far(np.array([1.0, np.nan, 3.0, 2.0]), "maximize").tolist()
    [1.0, 1.0, 3.0, 3.0]
    """
    v = np.asarray(values, dtype=float)
    sign = 1.0 if direction == "maximize" else -1.0
    filled = np.where(np.isnan(v), -np.inf, sign * v)
    run = np.maximum.accumulate(filled) if len(v) else filled
    out = sign * run
    out[np.isinf(run)] = np.nan
    return out


def plot_progress(values: np.ndarray, direction: str, objective: str, path: Path) -> Path:
    """Every result and the best so far against the number of oracle queries."""
    v = np.asarray(values, dtype=float)
    x = np.arange(1, len(v) + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ok = ~np.isnan(v)
    ax.scatter(x[ok], v[ok], s=14, alpha=0.6, label="each result")
    if (~ok).any():
        ax.scatter(x[~ok], np.full((~ok).sum(), np.nanmin(v) if ok.any() else 0.0), marker="x",
                   color="tab:red", s=18, label="failed query")
    ax.step(x, best_so_far(v, direction), where="post", color="black", label="best so far")
    ax.set_xlabel("oracle queries")
    ax.set_ylabel(f"{objective} ({direction})")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Results and best so far")
    return _save(fig, path)


def plot_rounds(values: np.ndarray, rounds: np.ndarray, objective: str, path: Path) -> Path:
    """Per-round distribution of oracle results (box plot with the points on top)."""
    v = np.asarray(values, dtype=float)
    r = np.asarray(rounds, dtype=int)
    labels = sorted(set(r.tolist()))
    groups = [v[(r == k) & ~np.isnan(v)] for k in labels]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if labels:
        ax.boxplot([g if len(g) else [np.nan] for g in groups], positions=range(len(labels)),
                   widths=0.6, showfliers=False)
        for i, g in enumerate(groups):
            jitter = np.linspace(-0.15, 0.15, len(g)) if len(g) > 1 else np.zeros(len(g))
            ax.scatter(i + jitter, g, s=10, alpha=0.6)
        ax.set_xticks(range(len(labels)), [str(k) for k in labels])
    ax.set_xlabel("round")
    ax.set_ylabel(objective)
    ax.set_title("Oracle results per round")
    return _save(fig, path)


def plot_surrogate_vs_oracle(mean: np.ndarray, std: np.ndarray, values: np.ndarray,
                             objective: str, path: Path) -> Path:
    """Surrogate prediction vs oracle result on queried designs: points far above the diagonal
    are designs the surrogate over-rated (the over-optimization check)."""
    m, s, v = (np.asarray(a, dtype=float) for a in (mean, std, values))
    ok = ~(np.isnan(m) | np.isnan(v))
    fig, ax = plt.subplots(figsize=(5, 5))
    if ok.any():
        ax.errorbar(v[ok], m[ok], yerr=np.nan_to_num(s[ok]), fmt="o", ms=4, alpha=0.6, elinewidth=0.8)
        lo, hi = float(min(v[ok].min(), m[ok].min())), float(max(v[ok].max(), m[ok].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="surrogate = oracle")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no surrogate predictions yet\n(round 0 samples the plain prior)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"oracle {objective}")
    ax.set_ylabel("surrogate mean ± std")
    ax.set_title("Surrogate vs oracle on queried designs")
    return _save(fig, path)


def plot_ess(traces: Sequence[tuple[int, np.ndarray]], path: Path) -> Path:
    """ESS per SMC step, one line per round (``traces``: ``(round, ESS / P per step)``)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, ess in traces:
        e = np.asarray(ess, dtype=float)
        ax.plot(np.arange(len(e)), e, lw=1, label=f"round {k}")
    if not traces:
        ax.text(0.5, 0.5, "no ESS traces recorded", ha="center", va="center", transform=ax.transAxes)
    elif len(traces) <= 12:
        ax.legend(loc="best", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("SMC step")
    ax.set_ylabel("ESS / P")
    ax.set_title("Effective sample size per step")
    return _save(fig, path)


def plot_design_grid(designs: np.ndarray, values: np.ndarray, path: Path, max_designs: int = 64) -> Path:
    """A grid of queried image designs (`n x H x W` or `n x C x H x W`), titled with their result."""
    d = np.asarray(designs, dtype=float)
    if d.ndim == 4:  # n x C x H x W: show the first channel (or RGB when C == 3)
        d = d.transpose(0, 2, 3, 1) if d.shape[1] == 3 else d[:, 0]
    n = min(len(d), max_designs)
    cols = int(np.ceil(np.sqrt(max(n, 1))))
    rows = int(np.ceil(max(n, 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = d[i]
            lo, hi = float(img.min()), float(img.max())
            ax.imshow((img - lo) / (hi - lo + 1e-12), cmap="gray" if img.ndim == 2 else None)
            val = values[i] if i < len(values) else np.nan
            ax.set_title("failed" if np.isnan(val) else f"{val:.3g}", fontsize=7)
    fig.suptitle("Queried designs (last first)", fontsize=9)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
