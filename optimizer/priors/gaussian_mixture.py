r"""The exact diffusion of a Gaussian mixture: the sampler's ground truth.

Clean distribution `p_0 = Σ_k w_k N(m_k, C_k)`. Under the VP forward process
`x_t = sqrt(ā_t) x_0 + sqrt(1 - ā_t) ε` every marginal is again a mixture,

    `p_t(x) = Σ_k w_k N(x; sqrt(ā_t) m_k, ā_t C_k + (1 - ā_t) I)`,

and the optimal noise prediction is exact: `ε̂(x_t, t) = -sqrt(1 - ā_t) ∇_x log p_t(x)`.
Reward tilts of a mixture by a linear `b·x` or a concave quadratic `-½(x-c)ᵀA(x-c)` are again
mixtures in closed form (``tilt_linear``, ``tilt_quadratic``), so a sampler's output can be
compared with the exact target.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from optimizer.errors import PriorError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]


def make_alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_schedule: BetaSchedule = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> Tensor:
    """`ā_t = Π_{s<=t} (1 - β_s)` for diffusers' named beta schedules (float64)."""
    T = num_train_timesteps
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)],
                             dtype=torch.float64)
    else:
        raise PriorError(
            f"beta_schedule={beta_schedule!r} is unknown; use linear, scaled_linear or "
            "squaredcos_cap_v2"
        )
    return torch.cumprod(1.0 - betas, dim=0)


def replica_groups(conditions: Sequence[Any] | None) -> tuple[int, None]:
    """Groups of an unconditional prior: 1 for None, else ``len(conditions)`` replicas, no context.

    Raises:
        PriorError: ``conditions`` is an empty list.
    """
    if conditions is None:
        return 1, None
    if len(conditions) == 0:
        raise PriorError("conditions is empty; pass None for one group or a non-empty list")
    return len(conditions), None


@dataclass(frozen=True)
class TiltedMixture:
    """A tilted mixture `p(x) exp(r(x)/α) / Z` and its exact `log Z = log E_p[exp(r/α)]`."""

    mixture: GaussianMixturePrior
    log_normalizer: Tensor


class GaussianMixturePrior:
    """Exact VP diffusion prior of `p_0 = Σ_k w_k N(m_k, C_k)` in `d` dimensions.

    Implements ``optimizer.priors.base.DiffusionPrior`` (unconditional; ``decode`` is the
    identity; ``conditions`` only set the number of independent groups).

    Args:
        means: `K x d`-dim Tensor `m_k`.
        covariances: `K x d x d`-dim Tensor `C_k` (symmetric positive definite).
        weights: `K`-dim Tensor of positive mixture weights (normalized here).
        num_train_timesteps: `T_train`.
        beta_schedule, beta_start, beta_end: the noise schedule, as in diffusers.
        dtype: dtype of the schedule and parameters (default: ``means.dtype``).

    >>> gm = GaussianMixturePrior(torch.tensor([[-2., 0.], [2., 0.]]),
    ...                           0.1 * torch.eye(2).repeat(2, 1, 1), torch.tensor([0.3, 0.7]))
    >>> gm.predict_noise(torch.zeros(4, 2), t=500).shape
    torch.Size([4, 2])
    """

    def __init__(
        self,
        means: Tensor,
        covariances: Tensor,
        weights: Tensor,
        *,
        num_train_timesteps: int = 1000,
        beta_schedule: BetaSchedule = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        dtype: torch.dtype | None = None,
    ) -> None:
        means, covariances, weights = (torch.as_tensor(v) for v in (means, covariances, weights))
        if means.dim() != 2:
            raise PriorError(f"means has shape {tuple(means.shape)}; pass a `K x d` Tensor")
        K, d = means.shape
        if covariances.shape != (K, d, d):
            raise PriorError(
                f"covariances has shape {tuple(covariances.shape)}; expected {(K, d, d)} "
                "(one `d x d` matrix per mean)"
            )
        if weights.shape != (K,) or not bool((weights > 0).all()):
            raise PriorError(
                f"weights={weights.tolist()} must be {K} positive numbers (one per mean)"
            )
        if not torch.allclose(covariances, covariances.transpose(-1, -2), atol=1e-6):
            raise PriorError("covariances are not symmetric; pass (C + Cᵀ)/2")
        if torch.linalg.cholesky_ex(covariances.double()).info.any():
            raise PriorError("covariances are not positive definite; add a multiple of I")
        self.dtype = dtype or (means.dtype if means.is_floating_point() else torch.float32)
        self.device = means.device
        self.means = means.to(self.dtype)
        self.covariances = covariances.to(self.dtype)
        self.weights = (weights / weights.sum()).to(self.dtype)
        self.latent_shape: tuple[int, ...] = (d,)
        self._schedule: dict[str, Any] = dict(num_train_timesteps=num_train_timesteps,
                              beta_schedule=beta_schedule, beta_start=beta_start,
                              beta_end=beta_end)
        ac = make_alphas_cumprod(num_train_timesteps, beta_schedule, beta_start, beta_end)
        self.alphas_cumprod = ac.to(self.device, self.dtype)
        self._ac = ac.tolist()  # host copy: the timestep index never touches the device
        self._cache: dict[tuple[int | None, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}

    # -- DiffusionPrior protocol -------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        """`T_train`."""
        return len(self._ac)

    def _marginal(self, t: int | None, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """`(sqrt(ā_t) m_k, Σ_k^{-1}, log N normalizer_k)` of the marginal at ``t``, cached.

        `Σ_k = ā_t C_k + (1 - ā_t) I` (``t=None``: the clean `C_k`). Computed once per
        timestep in float64 on the host side of the loop, so a sampling step is only batched
        matrix products (cheap, differentiable, no host sync).
        """
        key = (t, dtype)
        if key not in self._cache:
            a = 1.0 if t is None else self._ac[t]
            d = self.latent_shape[0]
            eye = torch.eye(d, dtype=torch.float64, device=self.device)
            cov = self.covariances.double() if t is None else (
                a * self.covariances.double() + (1.0 - a) * eye)
            prec = torch.linalg.inv(cov)
            prec = 0.5 * (prec + prec.transpose(-1, -2))
            log_norm = (torch.log(self.weights.double()) - 0.5 * torch.logdet(cov)
                        - 0.5 * d * math.log(2 * math.pi))
            centers = math.sqrt(a) * self.means.double()
            self._cache[key] = (centers.to(dtype), prec.to(dtype), log_norm.to(dtype))
        return self._cache[key]

    def _logits_and_precdiff(self, x: Tensor, t: int | None) -> tuple[Tensor, Tensor]:
        centers, prec, log_norm = self._marginal(t, x.dtype)
        diff = x[:, None, :] - centers  # B x K x d
        prec_diff = torch.einsum("kij,bkj->bki", prec, diff)  # Σ_k^{-1}(x - μ_k)
        logits = log_norm - 0.5 * (diff * prec_diff).sum(-1)  # log w_k N(x; μ_k, Σ_k)
        return logits, prec_diff

    def marginal_log_prob(self, x: Tensor, t: int | None) -> Tensor:
        """`log p_t(x)` (``t=None``: the clean mixture `p_0`), `B x d` → `B`."""
        return torch.logsumexp(self._logits_and_precdiff(x, t)[0], dim=-1)

    def predict_noise(self, x: Tensor, t: int, context: Tensor | None = None) -> Tensor:
        """Exact `ε̂(x_t, t) = -sqrt(1 - ā_t) ∇ log p_t(x_t)` (`B x d` → `B x d`)."""
        t = int(t)
        logits, prec_diff = self._logits_and_precdiff(x, t)
        resp = torch.softmax(logits, dim=-1)  # B x K
        score = -(resp.unsqueeze(-1) * prec_diff).sum(1)
        return -math.sqrt(1.0 - self._ac[t]) * score

    def decode(self, x0: Tensor) -> Tensor:
        """Identity: the design space is the diffusion space."""
        return x0

    def prepare_context(
        self, conditions: Sequence[Any] | None, num_particles: int
    ) -> tuple[int, Tensor | None]:
        """`G = len(conditions)` independent replicas (or 1); no conditioning tensor."""
        return replica_groups(conditions)

    # -- closed-form helpers -----------------------------------------------------------------
    def _with(self, means: Tensor, covariances: Tensor, weights: Tensor) -> GaussianMixturePrior:
        return GaussianMixturePrior(means.to(self.dtype), covariances.to(self.dtype),
                                    weights.to(self.dtype), dtype=self.dtype, **self._schedule)

    @property
    def mean(self) -> Tensor:
        """`E[x] = Σ_k w_k m_k` (`d`)."""
        return (self.weights[:, None] * self.means).sum(0)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior mode probabilities `P(k | x)` under `p_0` (`B x d` → `B x K`).

        `E_{p_0}[P(k | x)] = w_k`, so weighted averages of these estimate mode occupancy
        without a hard assignment.
        """
        return torch.softmax(self._logits_and_precdiff(x, None)[0], dim=-1)

    def sample_exact(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """`num` exact i.i.d. draws from `p_0` (`num x d`)."""
        where = generator.device if generator is not None else self.device
        comp = torch.multinomial(self.weights.to(where, torch.float64), num, replacement=True,
                                 generator=generator).to(self.device)
        z = torch.randn(num, self.latent_shape[0], generator=generator, dtype=self.dtype,
                        device=where).to(self.device)
        L = torch.linalg.cholesky(self.covariances)
        return self.means[comp] + (L[comp] @ z.unsqueeze(-1)).squeeze(-1)

    def expected_quadratic(self, A: Tensor, c: Tensor) -> Tensor:
        """`E_{p_0}[-½ (x - c)ᵀ A (x - c)] = -½ Σ_k w_k ((m_k - c)ᵀ A (m_k - c) + tr(A C_k))`."""
        A, c = A.to(self.dtype), c.to(self.dtype)
        diff = self.means - c
        quad = torch.einsum("ki,ij,kj->k", diff, A, diff) + torch.einsum("ij,kji->k", A,
                                                                        self.covariances)
        return -0.5 * (self.weights * quad).sum()

    def tilt_linear(self, b: Tensor, alpha: float) -> TiltedMixture:
        """Exact `p_0(x) exp(bᵀx / α) / Z`.

        Component k: mean `m_k + C_k b / α`, covariance `C_k`, weight
        `∝ w_k exp(bᵀm_k / α + ½ bᵀC_k b / α²)`.
        """
        b64, m, C, w = (v.double() for v in (b, self.means, self.covariances, self.weights))
        Cb = (C @ b64) / alpha  # K x d
        log_zk = m @ b64 / alpha + 0.5 * (Cb @ b64) / alpha
        logits = torch.log(w) + log_zk
        return TiltedMixture(self._with(m + Cb, C, torch.softmax(logits, 0)),
                             torch.logsumexp(logits, 0).to(self.dtype))

    def tilt_quadratic(self, A: Tensor, c: Tensor, alpha: float) -> TiltedMixture:
        """Exact `p_0(x) exp(-½ (x - c)ᵀ A (x - c) / α) / Z` for symmetric PSD `A`.

        With `Λ_k = C_k^{-1} + A/α`, `h_k = C_k^{-1} m_k + A c / α`: component k has covariance
        `Λ_k^{-1}`, mean `Λ_k^{-1} h_k`, and weight `∝ w_k Z_k` with
        `log Z_k = ½ log|Λ_k^{-1}| - ½ log|C_k| - ½ m_kᵀC_k^{-1}m_k - ½ cᵀAc/α + ½ h_kᵀΛ_k^{-1}h_k`.
        """
        A64, c64 = A.double() / alpha, c.double()
        m, C, w = (v.double() for v in (self.means, self.covariances, self.weights))
        C_inv = torch.linalg.inv(C)
        cov = torch.linalg.inv(C_inv + A64)
        h = (C_inv @ m.unsqueeze(-1)).squeeze(-1) + A64 @ c64
        mean = (cov @ h.unsqueeze(-1)).squeeze(-1)
        log_zk = (0.5 * torch.logdet(cov) - 0.5 * torch.logdet(C)
                  - 0.5 * torch.einsum("ki,kij,kj->k", m, C_inv, m)
                  - 0.5 * c64 @ A64 @ c64 + 0.5 * (h * mean).sum(-1))
        logits = torch.log(w) + log_zk
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        return TiltedMixture(self._with(mean, cov, torch.softmax(logits, 0)),
                             torch.logsumexp(logits, 0).to(self.dtype))
