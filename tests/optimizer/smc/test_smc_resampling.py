"""Resampling schemes: valid, unbiased (E[offspring_i] = N W_i), batched, adaptive per group."""
from __future__ import annotations

import pytest
import torch

from optimizer.smc.errors import SMCConfigError
from optimizer.smc.resampling import RESAMPLERS, get_resampler, resample_groups

WEIGHTS = torch.tensor([0.001, 0.05, 0.3, 0.149, 0.2, 0.0, 0.25, 0.05], dtype=torch.float64)


def _offspring(anc: torch.Tensor, P: int) -> torch.Tensor:
    counts = torch.zeros(anc.shape[0], P, dtype=torch.float64, device=anc.device)
    return counts.scatter_add_(1, anc, torch.ones_like(anc, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
@pytest.mark.parametrize("num", [8, 5])
def test_scheme_is_unbiased(name, num, device):
    """Offspring counts over R independent groups average to N W_i within 5 standard errors."""
    R, P = 4000, WEIGHTS.shape[0]
    W = WEIGHTS.to(device).expand(R, P).contiguous()
    g = torch.Generator(device=device).manual_seed(123)
    anc = RESAMPLERS[name](W, num, g)
    assert anc.shape == (R, num) and anc.dtype == torch.long
    assert int(anc.min()) >= 0 and int(anc.max()) < P
    counts = _offspring(anc, P)
    assert torch.all(counts.sum(-1) == num)
    assert torch.all(counts[:, 5] == 0), "a zero-weight particle got offspring"
    mean = counts.mean(0)
    se = counts.std(0) / R**0.5
    expected = num * WEIGHTS.to(device)
    assert torch.all((mean - expected).abs() <= 5 * se + 2e-3), (name, mean, expected)


@pytest.mark.parametrize("name", ["systematic", "stratified", "residual", "ssp"])
def test_low_variance_schemes_keep_counts_near_n_w(name, device):
    """These schemes never give fewer than floor(N W_i) - 1 or more than ceil(N W_i) + 1."""
    R, P = 500, WEIGHTS.shape[0]
    W = WEIGHTS.to(device).expand(R, P).contiguous()
    counts = _offspring(RESAMPLERS[name](W, P, torch.Generator(device=device).manual_seed(1)), P)
    nw = P * WEIGHTS.to(device)
    assert torch.all(counts >= torch.floor(nw) - 1) and torch.all(counts <= torch.ceil(nw) + 1)


def test_ssp_counts_are_floor_or_ceil(device):
    R, P = 500, WEIGHTS.shape[0]
    W = WEIGHTS.to(device).expand(R, P).contiguous()
    counts = _offspring(RESAMPLERS["ssp"](W, P, torch.Generator(device=device).manual_seed(2)), P)
    nw = P * WEIGHTS.to(device)
    assert torch.all((counts == torch.floor(nw)) | (counts == torch.ceil(nw)))


def test_batched_groups_use_their_own_weights(device):
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], device=device)
    for name, scheme in RESAMPLERS.items():
        anc = scheme(W, 3, torch.Generator(device=device).manual_seed(0))
        assert anc.tolist() == [[0, 0, 0], [2, 2, 2]], name


def test_unknown_scheme_lists_valid_names():
    with pytest.raises(SMCConfigError) as exc:
        get_resampler("bootstrap")
    msg = str(exc.value)
    assert "resampling='bootstrap'" in msg
    for name in RESAMPLERS:
        assert name in msg


def test_only_groups_below_threshold_are_resampled(device):
    P = 6
    log_w = torch.zeros(3, P, device=device)
    log_w[1] = torch.tensor([0.0, -50, -50, -50, -50, -50], device=device)  # ESS ~ 1
    log_w[2, 0] = 1.0  # ESS slightly below P but above 0.5 P
    anc, resampled, ess = resample_groups(log_w, 0.5, RESAMPLERS["systematic"],
                                          torch.Generator(device=device).manual_seed(0))
    assert resampled.tolist() == [False, True, False]
    assert anc[0].tolist() == list(range(P)) and anc[2].tolist() == list(range(P))
    assert anc[1].tolist() == [0] * P
    assert ess[0].item() == pytest.approx(P)

