r"""Resampling schemes, batched over groups, registered by name.

Every scheme has one signature ``scheme(weights, num, generator) -> ancestors``:

* ``weights``: `G x P`-dim Tensor of normalized weights (rows sum to one);
* ``num``: `N`, the number of offspring to draw per group;
* ``generator``: the ``torch.Generator`` all randomness comes from (None: torch's default);
* returns a `G x N`-dim long Tensor of ancestor indices in `[0, P)`.

All are unbiased: `E[#{n : a_n = i}] = N W_i`. None synchronizes with the host: inverse-CDF
look-ups use ``torch.searchsorted`` and choices use ``torch.where``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from optimizer.smc.errors import SMCConfigError, format_choice_error
from optimizer.smc.weights import ess as effective_sample_size

Resampler = Callable[[Tensor, int, "torch.Generator | None"], Tensor]


def _cdf(weights: Tensor) -> Tensor:
    cdf = torch.cumsum(weights, dim=-1)
    return cdf / cdf[..., -1:]  # x / x == 1 exactly, so the last bin is closed


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _invert(weights: Tensor, u: Tensor) -> Tensor:
    """Ancestor `i` with `cdf_{i-1} <= u < cdf_i` for each `u` (`G x N`)."""
    idx = torch.searchsorted(_cdf(weights).contiguous(), u.contiguous(), right=True)
    return idx.clamp_(max=weights.shape[-1] - 1)


def counts_to_ancestors(counts: Tensor, num: int) -> Tensor:
    """Expand `G x P` offspring counts (summing to `num`) to `G x num` sorted ancestor indices."""
    cum = torch.cumsum(counts, dim=-1).contiguous()
    slots = torch.arange(num, device=counts.device, dtype=cum.dtype).expand(counts.shape[0], num)
    idx = torch.searchsorted(cum, slots.contiguous(), right=True)
    return idx.clamp_(max=counts.shape[-1] - 1)


def multinomial(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """`N` i.i.d. draws from the categorical `W` (inverse CDF of independent uniforms)."""
    return _invert(weights, _uniform((weights.shape[0], num), weights, generator))


def stratified(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """One uniform per stratum: `u_n = (n + U_n) / N`, `U_n ~ U[0, 1)` i.i.d."""
    G = weights.shape[0]
    n = torch.arange(num, device=weights.device, dtype=weights.dtype)
    return _invert(weights, (n + _uniform((G, num), weights, generator)) / num)


def systematic(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """One shared uniform per group: `u_n = (n + U) / N`, `U ~ U[0, 1)` (the default)."""
    G = weights.shape[0]
    n = torch.arange(num, device=weights.device, dtype=weights.dtype)
    return _invert(weights, (n + _uniform((G, 1), weights, generator)) / num)


def residual(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """`floor(N W_i)` deterministic copies, the `R = N - Σ floor(N W_i)` rest multinomial on
    the residual weights `N W_i - floor(N W_i)`."""
    G, P = weights.shape
    scaled = num * weights
    det = torch.floor(scaled)
    rest = scaled - det
    n_det = det.sum(-1, keepdim=True)  # `G x 1`, float but integral
    det_idx = counts_to_ancestors(det.to(torch.long), num)
    # Residual weights may be all zero when R == 0; those slots are then unused.
    rest_w = torch.where(rest.sum(-1, keepdim=True) > 0, rest, torch.ones_like(rest))
    res_idx = multinomial(rest_w / rest_w.sum(-1, keepdim=True), num, generator)
    slots = torch.arange(num, device=weights.device, dtype=weights.dtype).expand(G, num)
    return torch.where(slots < n_det, det_idx, res_idx)


def ssp(weights: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
    """Srinivasan sampling process (Gerber, Chopin & Whiteley 2019): minimal-variance counts.

    Counts start at `floor(N W_i)`; the fractional parts `ξ_i` are then paired one particle at
    a time. For the running survivor `s` and the next particle `n`, with `c = ξ_s + ξ_n`:

    1. `c <= 1`: one of the two keeps `c` (`s` with probability `ξ_s / c`), the other gets 0;
    2. `c > 1`: one gets a whole offspring (`s` with probability `(1 - ξ_n) / (2 - c)`),
       the other keeps `c - 1`.

    Each move keeps `E[ξ]`, so the counts are unbiased and every count is `floor` or `ceil` of
    `N W_i`. The loop runs over particles (`P - 1` vectorized steps over groups), no host sync.
    """
    G, P = weights.shape
    scaled = num * weights
    counts = torch.floor(scaled)
    frac = scaled - counts
    u = _uniform((G, max(P - 1, 1)), weights, generator)
    rows = torch.arange(G, device=weights.device)
    cur_idx = torch.zeros(G, dtype=torch.long, device=weights.device)
    cur_val = frac[:, 0].clone()
    tiny = torch.finfo(weights.dtype).tiny
    for n in range(1, P):
        val_n = frac[:, n]
        c = cur_val + val_n
        low = c <= 1.0
        keep_cur_low = u[:, n - 1] * c < cur_val  # P(keep s) = ξ_s / c
        unit_to_cur = u[:, n - 1] * (2.0 - c).clamp_min(tiny) < (1.0 - val_n)
        # c > 1: whoever gets the unit is resolved; the other survives with c - 1.
        counts[rows, cur_idx] += (~low & unit_to_cur).to(counts.dtype)
        counts[:, n] += (~low & ~unit_to_cur).to(counts.dtype)
        keep_cur = torch.where(low, keep_cur_low, ~unit_to_cur)
        cur_idx = torch.where(keep_cur, cur_idx, torch.full_like(cur_idx, n))
        cur_val = torch.where(low, c, c - 1.0)
    counts[rows, cur_idx] += (cur_val > 0.5).to(counts.dtype)  # Σ ξ is an integer: 0 or 1 left
    return counts_to_ancestors(counts.to(torch.long), num)


RESAMPLERS: dict[str, Resampler] = {
    "systematic": systematic,
    "stratified": stratified,
    "multinomial": multinomial,
    "residual": residual,
    "ssp": ssp,
}


def get_resampler(name: str) -> Resampler:
    """The scheme registered as ``name``; raises ``SMCConfigError`` listing the valid names."""
    try:
        return RESAMPLERS[name]
    except (KeyError, TypeError):
        raise SMCConfigError(format_choice_error("resampling", name, tuple(RESAMPLERS))) from None


def resample_groups(
    log_w: Tensor,
    threshold: float,
    scheme: Resampler,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Adaptive resampling: resample only the groups whose `ESS < κ P`.

    1. `ESS_g = (Σ w)² / Σ w²` per group;
    2. draw `P` ancestors for every group with ``scheme`` (cheap, keeps shapes static);
    3. keep the identity `a_p = p` for groups with `ESS_g >= κ P` (``torch.where``, no sync).

    Args:
        log_w: `G x P`-dim Tensor of log-weights.
        threshold: `κ` in `[0, 1]`; 0 never resamples, 1 nearly always.
        scheme: a resampler from ``RESAMPLERS``.
        generator: source of the uniforms.

    Returns:
        ``(ancestors, resampled, ess)``: `G x P` long, `G` bool, `G` float Tensors.
    """
    G, P = log_w.shape
    ess = effective_sample_size(log_w)
    resampled = ess < threshold * P
    weights = torch.softmax(log_w, dim=-1)
    drawn = scheme(weights, P, generator)
    identity = torch.arange(P, device=log_w.device).expand(G, P)
    return torch.where(resampled[:, None], drawn, identity), resampled, ess
