r"""Several objectives at once: the Pareto front, its hypervolume, the reference point, ParEGO weights.

Every function here takes *signed* outcomes `v = s ⊙ y` (`s_j = +1` for an objective to
maximize, `−1` to minimize), so "higher is better" in every column.

- front: `v_i` is non-dominated when no `v_k` has `v_k ≥ v_i` everywhere and `>` somewhere
  (BoTorch's ``is_non_dominated``);
- hypervolume: `HV(V; r) = vol{ z : r ≤ z ≤ v_i for some i }`, the volume the front dominates
  above the reference point `r` (BoTorch's ``DominatedPartitioning``, any number of objectives);
- reference point: given per objective, else BoTorch's ``infer_reference_point``
  (`r = nadir − 0.1 · range` of the observed front), a given entry kept as is;
- ParEGO weights (Knowles 2006): `w ~ Dirichlet(1, …, 1)`, uniform on the simplex, drawn from
  ``derive_seed(campaign seed, round, chunk, "parego")``: each SMC chunk of each round tilts
  toward its own direction of the front (augmented Chebyshev, ``scalarize.py``), and a resumed
  round draws the same weights.

>>> mask = pareto_mask(V)                        # n bools
>>> r = reference_point(V, given=(None, -2.0))   # m floats
>>> hypervolume(V, r)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from optimizer.seeds import derive_seed


def _as_2d(V: Tensor | np.ndarray) -> Tensor:
    t = V if isinstance(V, Tensor) else torch.as_tensor(np.asarray(V, dtype=np.float64))
    t = t.detach().to(torch.float64)
    if t.dim() >= 1 and t.shape[0]:
        return t.reshape(t.shape[0], -1)
    return t.reshape(0, t.shape[-1] if t.dim() == 2 else 0)


def pareto_mask(V: Tensor | np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``V`` (`n x m`, every column maximized); rows with a NaN are never
    on the front. Duplicates of a front point are all kept."""
    from botorch.utils.multi_objective.pareto import is_non_dominated

    t = _as_2d(V)
    out = np.zeros(t.shape[0], dtype=bool)
    ok = torch.isfinite(t).all(dim=-1)
    if bool(ok.any()):
        out[ok.numpy()] = is_non_dominated(t[ok], deduplicate=False).numpy()
    return out


def reference_point(V: Tensor | np.ndarray, given: Sequence[float | None] | None = None) -> Tensor:
    """The reference point `r` (`m` floats, signed orientation) for outcomes ``V`` (`n x m`).

    Args:
        V: signed observed outcomes (rows with a NaN are ignored).
        given: per objective a signed reference or None (inferred); None: all inferred.

    Returns:
        ``given`` where set; elsewhere BoTorch's ``infer_reference_point`` on the front of
        ``V`` (nadir minus a tenth of the front's range; `v − 1` for a one-point front's column
        and `0` for an empty ``V``).
    """
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

    t = _as_2d(V)
    m = t.shape[-1] if given is None else len(given)
    fixed = torch.tensor([float("nan") if g is None else float(g) for g in (given or [None] * m)],
                         dtype=torch.float64)
    t = t[torch.isfinite(t).all(dim=-1)] if t.numel() else t.reshape(0, m)
    if t.shape[0] == 0:
        return torch.where(torch.isnan(fixed), torch.zeros_like(fixed), fixed)
    front = t[torch.as_tensor(pareto_mask(t))]
    ref = infer_reference_point(front, max_ref_point=fixed if not torch.isnan(fixed).all() else None)
    # a front of one point (or a constant column) has zero range: step one unit below it
    flat = (front.max(0).values - front.min(0).values) <= 0
    ref = torch.where(flat & torch.isnan(fixed), front.min(0).values - 1.0, ref)
    return torch.where(torch.isnan(fixed), ref, fixed)


def feasible_reference(V: Tensor | np.ndarray, feasible: Tensor | np.ndarray,
                       given: Sequence[float | None] | None = None) -> Tensor:
    """:func:`reference_point` of the feasible rows of ``V`` (``feasible``: `n` bools), of all
    rows while none is feasible: an infeasible result must not move the reference (every
    Pareto pick, single- or multi-fidelity, infers it this way)."""
    t = _as_2d(V)
    ok = (feasible if isinstance(feasible, Tensor) else torch.as_tensor(np.asarray(feasible, dtype=bool)))
    ok = ok.to(device=t.device, dtype=torch.bool).reshape(-1)
    return reference_point(t[ok] if bool(ok.any()) else t, given)


def hypervolume(V: Tensor | np.ndarray, ref: Tensor | np.ndarray | Sequence[float]) -> float:
    """`HV(V; r)`: the volume dominated by the rows of ``V`` (`n x m`, maximized) above ``ref``;
    rows not strictly above ``ref`` in every column (or with a NaN) add nothing."""
    from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning

    t = _as_2d(V)
    r = torch.as_tensor(ref, dtype=torch.float64).reshape(-1)
    if t.numel() == 0:
        return 0.0
    t = t[torch.isfinite(t).all(dim=-1) & (t > r).all(dim=-1)]
    if t.shape[0] == 0:
        return 0.0
    return float(DominatedPartitioning(ref_point=r, Y=t).compute_hypervolume())


def hypervolume_trace(V: Tensor | np.ndarray, ref: Tensor | np.ndarray | Sequence[float],
                      counts: Sequence[int]) -> list[float]:
    """`HV` of the first `c` rows of ``V`` for each `c` in ``counts`` (ascending): the
    hypervolume after each number of queries, one reference point for all."""
    t = _as_2d(V)
    out, front, done = [], t[:0], 0
    for c in counts:
        new = t[done:c]
        if new.shape[0]:
            front = torch.cat([front, new])
            front = front[torch.as_tensor(pareto_mask(front))]
        done = max(done, int(c))
        out.append(hypervolume(front, ref))
    return out


def parego_weights(campaign_seed: int, round_index: int, chunk: int, m: int,
                   tag: str | None = None) -> tuple[float, ...]:
    """ParEGO's weights of one SMC chunk: uniform on the simplex `{w ≥ 0, Σ w = 1}` (normalized
    exponentials), a pure function of (campaign seed, round, chunk, ``tag``)."""
    if m < 1:
        raise ValueError(f"parego_weights needs m >= 1 objectives, got {m}")
    purpose = "parego" if tag is None else f"parego/{tag}"
    gen = torch.Generator().manual_seed(derive_seed(campaign_seed, round_index, chunk, purpose))
    e = -torch.log1p(-torch.rand(m, generator=gen, dtype=torch.float64))  # Exp(1), never 0·log 0
    w = e / e.sum()
    return tuple(float(x) for x in w)
