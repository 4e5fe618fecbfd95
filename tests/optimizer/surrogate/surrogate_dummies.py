"""Tiny real components for surrogate tests: a real BoTorch GP on 8 points, a tiny embedding net.

Import from test files in this folder as ``from surrogate_dummies import ...``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from optimizer.surrogate import FeatureMap, IdentityFeatures, Surrogate, SurrogateConfig


def smooth_f(X: Tensor) -> Tensor:
    """A known smooth function on `[0, 1]^2`: `n x 2` → `n x 1`, maximum 1 at (0.3, 0.7)."""
    return (1.0 - 2.0 * ((X[:, :1] - 0.3) ** 2 + (X[:, 1:2] - 0.7) ** 2)).reshape(-1, 1)


def get_dummy_surrogate(
    *, n: int = 8, num_objectives: int = 1, noise_std: float = 0.01, with_yvar: bool = False,
    feature_map: FeatureMap | None = None, config: SurrogateConfig | None = None, seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Surrogate:
    """A real ``SingleTaskGP`` (or model list) fitted on ``n`` noisy samples of ``smooth_f``."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=dtype)
    f = smooth_f(X)
    cols = [f] + [-(X[:, :1] - 0.8) ** 2 for _ in range(num_objectives - 1)]
    Y = torch.cat(cols, dim=1) + noise_std * torch.randn(n, num_objectives, generator=g, dtype=dtype)
    Yvar = torch.full_like(Y, noise_std ** 2) if with_yvar else None
    cfg = config or SurrogateConfig(fit_maxiter=60)
    return Surrogate.fit(X, Y, Yvar, feature_map=feature_map or IdentityFeatures(), config=cfg)


def make_embedding_net() -> nn.Module:
    """Zero-argument factory (importable by reference): a tiny float64 MLP, `B x 4` → `B x 2`."""
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # seeded weights without touching the global RNG
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.7)
    return net
