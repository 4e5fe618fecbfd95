r"""Posterior mean and marginal variance of one fitted GP from cached solves, in chunks.

For a ``SingleTaskGP`` in eval mode with (transformed) training inputs `X`, standardized targets
`y`, prior mean `m`, kernel `k` and observation noise `D`:

    `K = k(X, X) + D = L Lᵀ`,  `α = K⁻¹ (y − m(X))`                  (once per surrogate)
    `μ(z) = m(z) + k(z, X) α`,  `σ²(z) = k(z, z) − ‖L⁻¹ k(X, z)‖²`   (per test point)

then the outcome transform (``Standardize``) maps both back to the data's units. This is exactly
what GPyTorch computes for the marginals, without forming the `B x B` joint covariance that
``model.posterior(Z).variance`` builds for `B` test points: memory is `O(c n)` for chunks of `c`
rows, time `O(B n²)` plus one `O(n³)` Cholesky. Gradients flow to `z` (the caches are constants,
as GPyTorch's ``detach_test_caches`` makes them).

>>> cache = PredictiveCache(model)          # model: a SingleTaskGP in eval mode
>>> mean, var = cache.mean_var(Z)           # `b` each, in the outcome's units
"""
from __future__ import annotations

import gpytorch
import torch
from botorch.models import SingleTaskGP
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

#: elements of one `c x n` cross-covariance block (8 MB of float64 per million): bounds memory.
BLOCK_ELEMENTS = 4_000_000


class PredictiveCache:
    """The per-model constants of the exact GP posterior: `L`, `L⁻¹`, `α` and the transforms.

    Args:
        model: a fitted ``SingleTaskGP`` in eval mode (one outcome; inputs already transformed in
            ``train_inputs``, as BoTorch keeps them in eval mode).
    """

    def __init__(self, model: SingleTaskGP) -> None:
        self.model = model
        with torch.no_grad():
            X = model.train_inputs[0]
            y = model.train_targets
            n = X.shape[-2]
            K = model.covar_module(X).to_dense()
            noise = model.likelihood.noise.expand(n)
            K = K + torch.diag_embed(noise)
            self.L = psd_safe_cholesky(K)
            resid = (y - model.mean_module(X)).unsqueeze(-1)
            alpha = torch.cholesky_solve(resid, self.L)
            # `[L⁻ᵀ | α]`: one matmul per chunk gives `L⁻¹ k(X, z)` and `k(z, X) α` together (a
            # GEMM runs about twice as fast as the triangular solve, with its backward too).
            eye = torch.eye(n, dtype=K.dtype, device=K.device)
            Linv_t = torch.linalg.solve_triangular(self.L, eye, upper=False).transpose(-1, -2)
            self.proj = torch.cat([Linv_t, alpha], dim=-1).contiguous()
        self.train_X = X
        self.chunk_rows = max(16, BLOCK_ELEMENTS // max(n, 1))

    def mean_var(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and latent variance at raw features ``Z`` (`b x k`): `b` each, in the
        outcome's units (variance floored like GPyTorch's ``min_variance``); differentiable."""
        model = self.model
        means, variances = [], []
        for Zc in Z.split(self.chunk_rows):
            T = model.transform_inputs(Zc)
            Ks = model.covar_module(T, self.train_X).to_dense()          # c x n
            W = Ks @ self.proj                                               # c x (n + 1)
            mu = model.mean_module(T) + W[:, -1]
            var = model.covar_module(T, diag=True) - W[:, :-1].pow(2).sum(-1)
            means.append(mu)
            variances.append(var)
        mean, var = torch.cat(means), torch.cat(variances)
        tf = getattr(model, "outcome_transform", None)
        if tf is not None:
            m, v = tf.untransform(mean.unsqueeze(-1), var.unsqueeze(-1))
            mean, var = m.squeeze(-1), v.squeeze(-1)
        return mean, var.clamp_min(gpytorch.settings.min_variance.value(var.dtype))
