r"""The UNet-Jacobian-free guided proposal of DAS (``guidance="tweedie"``).

The full guided proposal shifts the DDIM move by `σ² λ g / α` with the exact look-ahead
gradient `g = ∇_{x_t} r(D(x̂0(x_t))) = Jᵀ ∇_{x̂0} r`, `J = ∂x̂0/∂x_t`, which back-propagates
through the denoiser every step. Tweedie's formula gives `J` without the denoiser:

    `x̂0 = E[x_0 | x_t] = (x_t − sqrt(1 − ā_t) ε̂) / sqrt(ā_t)`,
    `J = sqrt(ā_t) Cov[x_0 | x_t] / (1 − ā_t)`   (second-order Tweedie).

Holding `ε̂` fixed is the flat-prior case, `Cov = (1 − ā)/ā I`, `J = I / sqrt(ā)`: right
when `ā → 1`, but at the noisy steps it overshoots the true `J ≈ sqrt(ā) Cov[x_0]` by `~1/ā`
(10⁴ at `ā = 10⁻⁴`), and the proposal's ESS collapses to a few particles for a third of the
run (measured on the closed-form mixtures: min ESS 1–3 of 512, against ~250 below). With
the posterior covariance of a unit-variance prior `N(m, s² I)`, `s² = 1` (the scale VP
diffusion models are trained at; Stable Diffusion's VAE ``scaling_factor`` is chosen for it),

    `Cov = (ā/(1 − ā) + 1/s²)⁻¹ I`,   `J = sqrt(ā) s² / (ā s² + 1 − ā) I = sqrt(ā) I`,

so `g̃ = sqrt(ā_t) ∇_{x̂0} r(D(x̂0))`: one backward pass through the decoder and the reward,
none through the denoiser (with ``clip_sample``, clipped coordinates get no gradient, as
through the clamp). `g̃` is only a proposal shift: the weights carry
`log p(x_s|x_t) − log q(x_s|x_t)` of the shift used, so the target stays exact and a poorer
`J` costs ESS, not correctness.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

#: `s²`, the per-coordinate prior variance in the Gaussian posterior covariance of `x_0`.
PRIOR_VARIANCE = 1.0


def tweedie_jacobian(a: float, prior_variance: float = PRIOR_VARIANCE) -> float:
    """Scalar `∂x̂0/∂x_t = sqrt(ā) s² / (ā s² + 1 − ā)` for a `N(m, s² I)` prior.

    `s² → ∞` gives the `ε̂`-held-fixed `1 / sqrt(ā)`; `s² = 1` gives `sqrt(ā)`.

    >>> tweedie_jacobian(0.25), tweedie_jacobian(0.25, math.inf)
    (0.5, 2.0)
    """
    if math.isinf(prior_variance):
        return 1.0 / math.sqrt(a)
    return math.sqrt(a) * prior_variance / (a * prior_variance + 1.0 - a)


def tweedie_lookahead(
    x0: Tensor,
    a: float,
    *,
    decode: Callable[[Tensor], Tensor],
    reward: Callable[[Tensor], Tensor],
    model_dtype: torch.dtype,
    clip_sample: float | None = None,
    checkpointing: bool = False,
) -> tuple[Tensor, Tensor]:
    """`(r(D(x̂0)), g̃)` at `B` rows of Tweedie estimates ``x0``, `g̃ = J ∇_{x̂0} r`.

    Args:
        x0: `B x *latent_shape` `x̂0(x_t)` (already clipped, if the run clips).
        a: `ā_t`.
        decode: the prior's decoder `D` (run in ``model_dtype``).
        reward: `r`: designs → `B` rewards (checked and cast by the caller).
        model_dtype: dtype the decoder runs in.
        clip_sample: the run's clamp range `c`, or None; coordinates at `±c` get no gradient.
        checkpointing: recompute the decoder's activations in the backward pass.

    Returns:
        The detached `B` look-ahead rewards and the `B x *latent_shape` shift direction `g̃`
        (``x0``'s dtype).

    >>> r, g = tweedie_lookahead(x0, 0.5, decode=prior.decode, reward=target._reward,
    ...                          model_dtype=prior.dtype)
    """
    with torch.enable_grad():
        x0g = x0.detach().requires_grad_(True)
        xm = x0g.to(model_dtype)
        design = checkpoint(decode, xm, use_reentrant=False) if checkpointing else decode(xm)
        r = reward(design)
        (grad,) = torch.autograd.grad(r.sum(), x0g)
    if clip_sample is not None:
        grad = torch.where(x0.abs() < clip_sample, grad, torch.zeros_like(grad))
    return r.detach(), tweedie_jacobian(a) * grad
