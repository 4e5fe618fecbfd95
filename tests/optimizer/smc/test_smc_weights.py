"""Log-space weights, ESS and conditional ESS."""
from __future__ import annotations

import math

import torch

from optimizer.smc.weights import conditional_ess_fraction, ess, normalize_log_weights


def test_normalize_sums_to_one_and_survives_huge_logs(device):
    log_w = torch.tensor([[1000.0, 1000.0, 999.0], [-500.0, -499.0, -498.0]], device=device)
    W = normalize_log_weights(log_w).exp()
    torch.testing.assert_close(W.sum(-1), torch.ones(2, device=device))
    assert torch.isfinite(W).all()
    e = math.e
    torch.testing.assert_close(W[0], torch.tensor([e, e, 1.0], device=device) / (2 * e + 1))


def test_ess_extremes_and_known_value(device):
    P = 10
    assert torch.allclose(ess(torch.zeros(1, P, device=device)), torch.tensor([10.0], device=device))
    one_hot = torch.full((1, P), -1e30, device=device)
    one_hot[0, 3] = 0.0
    assert torch.allclose(ess(one_hot), torch.tensor([1.0], device=device))
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]], device=device)
    expected = w.sum() ** 2 / (w**2).sum()
    torch.testing.assert_close(ess(w.log()), expected.reshape(1))


def test_cess_reduces_to_increment_ess_under_uniform_weights(device):
    g = torch.Generator(device=device).manual_seed(0)
    inc = torch.randn(3, 50, generator=g, device=device)
    frac = conditional_ess_fraction(torch.zeros(3, 50, device=device), inc)
    torch.testing.assert_close(frac, ess(inc) / 50)


def test_cess_weights_by_current_weights(device):
    # Only particle 0 carries weight: any increment keeps CESS = 1 (nothing else matters).
    log_w = torch.tensor([[0.0, -1e30, -1e30]], device=device)
    inc = torch.tensor([[0.0, 5.0, -5.0]], device=device)
    torch.testing.assert_close(conditional_ess_fraction(log_w, inc),
                               torch.ones(1, device=device))
