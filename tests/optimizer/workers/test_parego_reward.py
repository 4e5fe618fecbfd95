"""A worker rebuilds a ParEGO chunk's reward from the state bytes with the chunk's own weights
(``ChunkSpec.weights``): the same values as the driver's surrogate with those weights, different
from another chunk's."""
from __future__ import annotations

import numpy as np
import torch

from optimizer.surrogate import IdentityFeatures, Surrogate, SurrogateConfig
from optimizer.surrogate.pareto import parego_weights
from optimizer.workers.components import PriorBundle, rebuild_reward


def test_rebuilt_reward_uses_the_chunks_weights() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 2, generator=g, dtype=torch.float64)
    Y = torch.stack([X[:, 0], 1 - X[:, 0] + 0.3 * X[:, 1]], -1)
    sur = Surrogate.fit(X, Y, None, feature_map=IdentityFeatures(),
                        config=SurrogateConfig(scalarization="parego", fit_maxiter=30))
    bundle = PriorBundle("test", None, IdentityFeatures())
    blob = sur.state().to_bytes()
    Xt = torch.rand(20, 2, generator=g, dtype=torch.float64)
    w0, w1 = parego_weights(5, 2, 0, 2), parego_weights(5, 2, 1, 2)
    r0 = rebuild_reward(bundle, blob, X.numpy(), Y.numpy(), None, beta=1.0, weights=w0)
    r1 = rebuild_reward(bundle, blob, X.numpy(), Y.numpy(), None, beta=1.0, weights=w1)
    torch.testing.assert_close(r0(Xt), sur.reward(beta=1.0, weights=w0)(Xt))
    torch.testing.assert_close(r1(Xt), sur.reward(beta=1.0, weights=w1)(Xt))
    assert not np.allclose(r0(Xt).detach().numpy(), r1(Xt).detach().numpy())
    # the augmented Chebyshev by hand on the signed optimistic values scaled by the data's range
    mean, std = sur.posterior_mean_std(Xt)
    v = mean + std
    lo, hi = Y.min(0).values, Y.max(0).values
    u = (v - lo) / (hi - lo) * torch.tensor(w0, dtype=torch.float64)
    torch.testing.assert_close(r0(Xt).detach(), u.min(-1).values + 0.05 * u.sum(-1),
                               rtol=1e-6, atol=1e-8)
