"""Per-round sampler diagnostics, computed from the chunks' results and stored in the round's
``summary["diagnostics"]`` (shown by ``tiltloop status`` and the report's round table).

- ``min_ess_fraction``: the smallest ESS over the SMC steps and chunks, as a fraction of the
  chunk's particles (a value near ``1/P`` means the weights collapsed onto one particle);
- ``resampling_events``: resampling steps, summed over the chunks;
- ``unique_ancestors``: distinct founders of the final particles, summed over the chunks;
- ``kl``: the estimated `KL(π‖p_pre)` of the round's target `π ∝ p_pre · exp(r̂/α)`;
- ``batch_diversity``, ``batch_families``: the selected batch's mean pairwise distance in
  feature space and its number of distinct ancestor families (chunk, founder).

The KL estimator. For `π = p_pre · exp(r/α) / Z` with `Z = E_{p_pre}[exp(r/α)]`,

    KL(π‖p_pre) = E_π[log π − log p_pre] = E_π[r]/α − log Z.

Each chunk `c` returns normalized weights `W_ci` (its weighted particles target `π`), the final
rewards `r_ci` and `log Ẑ_c` (the SMC estimate of `log Z`). The chunks are pooled with mass `1/C`
each: `Ê_π[r] = (1/C) Σ_c Σ_i W_ci r_ci` and `Ẑ = (1/C) Σ_c Ẑ_c` (the mean of unbiased
estimates of `Z` is unbiased). Both parts are consistent as `P → ∞`; at finite `P`:

* `log Ẑ` is biased low (Jensen: `E[log Ẑ] ≤ log Z`, by about `Var(Ẑ/Z)/2`), so `−log Ẑ` pushes
  the estimate up;
* the self-normalized `Ê_π[r]` has an `O(1/P)` bias and, when the particles miss the part of the
  space where `π` puts its mass, underestimates `E_π[r]` — pushing the estimate down;
* with `N` equally weighted particles a weighted empirical measure can be at most `log N` nats
  from the base sample, so a KL beyond `log(C·P)` cannot be resolved (the estimate saturates).

A plain-prior round (`r = 0`) has `KL = 0`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp


def kl_from_weights(log_weights: Sequence[np.ndarray], rewards: Sequence[np.ndarray],
                    log_normalizers: Sequence[float], alpha: float) -> float:
    """`KL(π‖p_pre) ≈ Ê_π[r]/α − log Ẑ` from ``C`` chunks (see the module docstring).

    Args:
        log_weights: per chunk, its `P_c` normalized log-weights (``logsumexp`` = 0).
        rewards: per chunk, its `P_c` final rewards `r(x)`.
        log_normalizers: per chunk, `log Ẑ_c`, the estimate of `log E_{p_pre}[exp(r/α)]`.
        alpha: the round's `α` (> 0).

    Returns:
        The estimate in nats (may come out slightly negative at small `P`: it is not clipped,
        so the bias stays visible).
    """
    if not log_weights or len(log_weights) != len(rewards) or len(rewards) != len(log_normalizers):
        raise ValueError("kl_from_weights: give one log_weights, rewards and log_normalizer per chunk")
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"kl_from_weights: alpha must be finite and > 0, got {alpha}")
    C = len(log_weights)
    mean_r = 0.0
    for lw, r in zip(log_weights, rewards):
        lw = np.asarray(lw, dtype=np.float64).reshape(-1)
        w = np.exp(lw - logsumexp(lw))  # renormalized: stored weights carry float rounding
        mean_r += float(w @ np.asarray(r, dtype=np.float64).reshape(-1)) / C
    log_z = float(logsumexp(np.asarray(log_normalizers, dtype=np.float64))) - math.log(C)
    return mean_r / alpha - log_z


def kl_of_tilt(rewards: np.ndarray, alpha: float, log_weights: np.ndarray | None = None,
               extra: np.ndarray | None = None) -> float:
    """`KL(π_α‖p)` of the tilt `π_α ∝ p · exp(h)`, `h = r/α + c` (``extra`` `c`: an α-free log
    factor, e.g. the log probability of feasibility of outcome constraints; 0 when None),
    estimated on weighted samples of `p` by self-normalized importance sampling: with
    `v_i = w_i exp(h_i) / Σ_j w_j exp(h_j)`, `KL ≈ Σ v_i h_i − log Σ w_i exp(h_i)` (``w``
    normalized). This is exactly the KL between the two discrete measures on the sample, so
    without `c` it rises monotonically as `α` falls, and it is at most `−log min w_i` (`log N`
    for equal weights): see :func:`kl_from_weights` on the bias.

    Args:
        rewards: `N` values `r(x_i)` at samples `x_i ~ p`.
        alpha: `α > 0`.
        log_weights: `N` log-weights of the samples (None: equal weights).
        extra: `N` values `c(x_i)` (None: 0).
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    lw0 = (np.zeros_like(r) if log_weights is None
           else np.asarray(log_weights, dtype=np.float64).reshape(-1))
    lw0 = lw0 - logsumexp(lw0)
    h = r / alpha if extra is None else r / alpha + np.asarray(extra, dtype=np.float64).reshape(-1)
    lw = lw0 + h
    log_z = float(logsumexp(lw))
    v = np.exp(lw - log_z)
    return float(v @ h) - log_z


def round_diagnostics(outs: Sequence[Any], alpha: float, *, tilted: bool,
                      selected: Sequence[int] = (), features: np.ndarray | None = None) -> dict[str, Any]:
    """The diagnostics of one round (JSON-ready; see the module docstring).

    Args:
        outs: the chunks' results (``optimizer.workers.smc_worker.ChunkResult``), in pool order:
            candidate `i` of the round is particle `i` of the concatenated chunks.
        alpha: the round's `α`.
        tilted: False for a plain-prior round (its `KL` is 0).
        selected: indices of the selected candidates (the batch).
        features: `M x k` features of all candidates (batch diversity).
    """
    sel = np.asarray(list(selected), dtype=np.int64)
    chunk = np.concatenate([np.full(len(o.log_weights), o.chunk) for o in outs]) if outs else None
    origin = (np.concatenate([np.asarray(o.origin).reshape(-1) for o in outs]) if outs else None)
    families = (np.array([hash((int(chunk[i]), int(origin[i]))) for i in sel])
                if chunk is not None and origin is not None else None)
    return {**sampler_diagnostics(outs, alpha, tilted=tilted),
            **batch_figures(features[sel] if features is not None else None, families)}


def sampler_diagnostics(outs: Sequence[Any], alpha: float, *, tilted: bool) -> dict[str, Any]:
    """The SMC part of :func:`round_diagnostics` (one population, before any batch is chosen)."""
    fractions = [float(np.min(o.ess)) / len(o.log_weights) for o in outs if len(o.ess)]
    kl = (kl_from_weights([o.log_weights for o in outs], [o.rewards for o in outs],
                          [o.log_normalizer for o in outs], alpha) if tilted and outs else 0.0)
    return {
        "min_ess_fraction": min(fractions) if fractions else None,
        "resampling_events": int(sum(int(np.sum(o.resampled)) for o in outs)),
        "unique_ancestors": int(sum(len(np.unique(np.asarray(o.origin).reshape(-1))) for o in outs)),
        "kl": _finite_or_none(kl),
    }


def batch_figures(features: np.ndarray | None, families: np.ndarray | None) -> dict[str, Any]:
    """The batch part of :func:`round_diagnostics`: the selected designs' features and their
    ancestor-family ids (None where unknown)."""
    return {
        "batch_diversity": (mean_pairwise_distance(features)
                            if features is not None and len(features) > 1 else None),
        "batch_families": (int(len(np.unique(families)))
                           if families is not None and len(families) else None),
    }


def mean_pairwise_distance(x: np.ndarray) -> float | None:
    """Mean Euclidean distance over the `n(n−1)/2` pairs of rows of ``x`` (None below 2 rows)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    if n < 2:
        return None
    d = np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0.0))
    return float(d[np.triu_indices(n, 1)].mean())


def wasted_batches(rounds: Sequence[tuple[int, Sequence[float]]]) -> tuple[int, int, list[int]]:
    """Rounds whose every result is below the campaign's running median at the time.

    Args:
        rounds: ``(index, results)`` in round order, results oriented so larger is better.

    Returns:
        ``(wasted, judged, wasted indices)``: a round is judged when it has results and some
        earlier round had results (the running median is that of all earlier rounds' results).
    """
    earlier: list[float] = []
    wasted: list[int] = []
    judged = 0
    for index, values in rounds:
        vals = [float(v) for v in values if v is not None and math.isfinite(v)]
        if vals and earlier:
            judged += 1
            if max(vals) < float(np.median(earlier)):
                wasted.append(int(index))
        earlier += vals
    return len(wasted), judged, wasted


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
