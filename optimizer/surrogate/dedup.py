r"""Tolerance-aware duplicate detection between designs (never exact float equality).

Two designs are duplicates when their root-mean-square difference is within ``tol``:

`d(x, y) = ‖flatten(x) − flatten(y)‖₂ / √D ≤ tol`

so one ``tol`` means the same for a 2-vector and a 3x64x64 image. Distances come from
`‖x‖² + ‖y‖² − 2 x·y` in float64 (fast matrix products, chunked); the cancellation error is about
`1e-8` in RMS units for values of order 1, far below any sensible ``tol``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from optimizer.errors import ConfigError


@dataclass(frozen=True)
class Exclusion:
    """Why candidate ``index`` was not eligible: a duplicate of ``reason`` row ``other_index``.

    ``reason`` is ``"observed"`` (a training design of the surrogate: ``other_index`` is its
    row), ``"queried"`` (a row of the ``observed`` designs passed to ``screen``, e.g. a failed
    query), ``"pending"`` (in flight) or ``"candidate"`` (an earlier candidate of the same set);
    ``distance`` is the RMS distance `d`.
    """

    index: int
    reason: str
    other_index: int
    distance: float


def _sq_dist(A: Tensor, B: Tensor, b2: Tensor) -> Tensor:
    """`a x b` squared Euclidean distances between rows of `a x D` and `b x D` (float64)."""
    return ((A * A).sum(1)[:, None] + b2[None, :] - 2.0 * A @ B.T).clamp_min_(0.0)


def _hits(d2: Tensor, limit: float, offset: int, reason: str, D: int,
          out: dict[int, Exclusion]) -> None:
    best, arg = d2.min(dim=1)
    for i in torch.nonzero(best <= limit).flatten().tolist():
        if offset + i not in out:
            out[offset + i] = Exclusion(offset + i, reason, int(arg[i]),
                                        float((best[i] / D).sqrt()))


def find_duplicates(
    candidates: Tensor, references: Sequence[tuple[str, Tensor | None]], *, tol: float,
    chunk_size: int = 1024,
) -> list[Exclusion]:
    """Flag candidates within ``tol`` of a reference set or of an earlier candidate.

    Args:
        candidates: `M x *design_shape`-dim Tensor.
        references: ``(reason, R)`` pairs, `R` an `n x *design_shape`-dim Tensor or None; the
            first matching set (in this order) gives the reason.
        tol: RMS tolerance `≥ 0`.
        chunk_size: candidate rows per distance block (memory `chunk_size x max(n, M)`).

    Returns:
        Exclusions sorted by candidate index. Among the candidates left, no two are within
        ``tol`` (a candidate is dropped when any earlier candidate is within ``tol``).
    """
    if tol < 0:
        raise ConfigError(f"dedup_tol={tol} must be >= 0 (RMS distance per design value)")
    M = candidates.shape[0]
    C = candidates.reshape(M, -1).to(torch.float64)
    D = max(C.shape[1], 1)
    limit = tol * tol * D  # compare squared distances: no sqrt over the whole block
    c2 = (C * C).sum(1)
    out: dict[int, Exclusion] = {}
    for reason, R in references:
        if R is None or R.shape[0] == 0:
            continue
        Rf = R.reshape(R.shape[0], -1).to(device=C.device, dtype=torch.float64)
        if Rf.shape[1] != C.shape[1]:
            raise ConfigError(
                f"{reason} designs have {Rf.shape[1]} values each but candidates have "
                f"{C.shape[1]}; pass designs of the same shape"
            )
        r2 = (Rf * Rf).sum(1)
        for s in range(0, M, chunk_size):
            _hits(_sq_dist(C[s:s + chunk_size], Rf, r2), limit, s, reason, D, out)
    for s in range(1, M, chunk_size):
        e = min(s + chunk_size, M)
        d2 = _sq_dist(C[s:e], C[:e], c2[:e])  # only earlier candidates count: j < i
        d2[torch.arange(e, device=C.device)[None, :]
           >= torch.arange(s, e, device=C.device)[:, None]] = float("inf")
        _hits(d2, limit, s, "candidate", D, out)
    return [out[i] for i in sorted(out)]
