r"""Log-space importance weights: normalization and effective sample size.

All functions take `G x P`-dim log-weights (`G` groups, `P` particles; any leading batch dims
work) and reduce over the last dim. Nothing here leaves the device.
"""
from __future__ import annotations

import torch
from torch import Tensor


def normalize_log_weights(log_w: Tensor) -> Tensor:
    """Normalized log-weights `log W_i = log w_i - logsumexp_j log w_j`.

    Args:
        log_w: `G x P`-dim Tensor of unnormalized log-weights.

    Returns:
        `G x P`-dim Tensor whose `exp` sums to one over the last dim.

    >>> normalize_log_weights(torch.zeros(1, 4)).exp()
    tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    return torch.log_softmax(log_w, dim=-1)  # subtracts the max first: exact at any scale


def ess(log_w: Tensor) -> Tensor:
    """Effective sample size `ESS = (Σ w_i)² / Σ w_i²`, computed in log space.

    Args:
        log_w: `G x P`-dim Tensor of (unnormalized) log-weights.

    Returns:
        `G`-dim Tensor with values in `[1, P]`.

    >>> ess(torch.zeros(2, 8))
    tensor([8., 8.])
    """
    return torch.exp(2.0 * torch.logsumexp(log_w, dim=-1) - torch.logsumexp(2.0 * log_w, dim=-1))


def conditional_ess_fraction(
    log_w: Tensor, log_increment: Tensor, *, normalized: bool = False
) -> Tensor:
    """Conditional ESS fraction of an incremental weight under the current weights.

    `CESS / P = (Σ W_i u_i)² / Σ W_i u_i²` with `W` the normalized current weights and
    `u_i = exp(log_increment_i)` (Zhou, Johansen & Aston 2016). Right after resampling
    (`W` uniform) it is the plain ESS fraction of the incremental weights.

    Args:
        log_w: `G x P`-dim Tensor of current log-weights (normalized or not).
        log_increment: `G x P`-dim Tensor of incremental log-weights.
        normalized: ``log_w`` is already normalized (skip the normalization, e.g. inside a
            bisection that evaluates many increments for the same weights).

    Returns:
        `G`-dim Tensor in `(0, 1]`.
    """
    log_W = log_w if normalized else normalize_log_weights(log_w)
    num = 2.0 * torch.logsumexp(log_W + log_increment, dim=-1)
    den = torch.logsumexp(log_W + 2.0 * log_increment, dim=-1)
    return torch.exp(num - den)
