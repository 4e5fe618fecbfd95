r"""Tolerance-aware duplicate detection between designs (never exact float equality).

Two designs are duplicates when their root-mean-square difference is within ``tol``:

`d(x, y) = ‖flatten(x) − flatten(y)‖₂ / √D ≤ tol`

so one ``tol`` means the same for a 2-vector and a 3x64x64 image. Distances are screened with
`‖x‖² + ‖y‖² − 2 x·y` in float64 (fast matrix products, chunked) on designs centered at the
candidates' mean. That expansion cancels: its error grows with `‖x‖² + ‖y‖²` (uncentered designs
in physical units around 1e4 missed exact duplicates), so every pair within ``tol`` plus the
expansion's rounding bound `(D + 2) ε (‖x‖² + max ‖y‖²)` is re-measured exactly as `Σ (x − y)²`
before it is accepted or rejected.
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


def _hits(A: Tensor, B: Tensor, a2: Tensor, b2: Tensor, limit: float, offset: int, reason: str,
          out: dict[int, Exclusion], earlier_only: bool = False) -> None:
    """Record rows of `A` (`a x D`, float64) within ``limit`` squared distance of a row of `B`.

    1. screen all pairs with the expansion `‖a‖² + ‖b‖² − 2 a·b` (one matrix product) and keep
       those below ``limit`` plus the expansion's rounding bound;
    2. re-measure each row's nearest kept pair exactly; accept it when within ``limit``;
    3. a row whose nearest kept pair fails (a rounding-band case) re-measures all its kept pairs.
    ``earlier_only``: `A` is rows ``offset..`` of the candidates and `B` rows ``0..`` of the
    same set; only `j < i` counts.
    """
    D = A.shape[1]
    approx = torch.addmm(b2[None, :], A, B.T, alpha=-2.0).add_(a2[:, None])
    # Rounding bound of the expansion, per row (`‖b‖² <= max ‖b‖²` keeps it one vector).
    slack = (D + 2) * torch.finfo(torch.float64).eps * (a2 + b2.max())
    near = approx <= (limit + slack)[:, None]
    if earlier_only:
        near &= (torch.arange(B.shape[0], device=A.device)[None, :]
                 < torch.arange(offset, offset + A.shape[0], device=A.device)[:, None])
    best, arg = approx.masked_fill_(~near, float("inf")).min(dim=1)
    rows = torch.nonzero(torch.isfinite(best)).flatten()
    first = arg[rows]
    exact = ((A[rows] - B[first]) ** 2).sum(1)
    ok = exact <= limit
    found = {}
    for row, col, d2 in zip(rows[ok].tolist(), first[ok].tolist(), exact[ok].tolist()):
        found[row] = (col, d2)
    for row in rows[~ok].tolist():  # rare: the screen's nearest is not within tol
        cols = torch.nonzero(near[row]).flatten()
        d2s = ((A[row] - B[cols]) ** 2).sum(1)
        if bool((d2s <= limit).any()):
            found[row] = (int(cols[torch.argmin(d2s)]), float(d2s.min()))
    for row, (col, d2) in found.items():
        if offset + row not in out:
            out[offset + row] = Exclusion(offset + row, reason, col, (d2 / D) ** 0.5)


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
    # Distances do not depend on the origin; centering keeps the screen's norms (and its
    # rounding) at the scale of the designs' spread, not of their offset.
    center = C.mean(dim=0) if M > 0 else 0.0
    C = C - center
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
        Rf = Rf - center
        r2 = (Rf * Rf).sum(1)
        for s in range(0, M, chunk_size):
            e = min(s + chunk_size, M)
            _hits(C[s:e], Rf, c2[s:e], r2, limit, s, reason, out)
    for s in range(1, M, chunk_size):
        e = min(s + chunk_size, M)
        _hits(C[s:e], C[:e], c2[s:e], c2[:e], limit, s, "candidate", out, earlier_only=True)
    return [out[i] for i in sorted(out)]
