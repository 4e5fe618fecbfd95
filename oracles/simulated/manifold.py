r"""The "manifold designs" problem: valid designs lie near a curved 6-dim manifold in R^d.

Real design campaigns only accept *natural* designs: the historical ones lie near a thin,
curved set, and a point of the raw box far from it is invalid however good a surrogate thinks
it is. This problem reproduces that offline.

Manifold (``k = 6`` coordinates `u ∈ [0, 1]^6`, ambient dimension ``d`` ≥ 10, default 16):

    `f(u) = Q h(2u - 1)`,  `h(z) = [z ; a ⊙ sin(ω W z + φ)]`

with `W` a `(d-k) x k` matrix of random unit rows, `φ` random phases, amplitude `a`, frequency
`ω` and `Q` a random `d x d` rotation, all drawn from ``numpy.random.default_rng(seed)``.
The first `k` coordinates of `h` are `z` itself, so `f` is injective and `JᵀJ ⪰ I`.

Distance to the manifold: `dist(x) = min_{u ∈ [0,1]^6} ||x - f(u)||`, computed by projected
Gauss-Newton on `||Qᵀx - h(z)||²` started from the linear part `z_0 = clip((Qᵀx)_{1:k}, -1, 1)`
(``projection_steps`` iterations). The start is within the noise level of the nearest point for
designs near the manifold (curvature radius `≥ 1/(a ω²)` ≈ 1.4 ≫ the noise 0.02), where the
result is the exact local minimizer; far from the manifold it is an upper bound of the true
distance (a local minimizer), which is all a penalty and a support check need.

Oracle (maximize): `y(x) = -Hartmann6(u*(x)) - penalty · dist(x)²`, with `u*(x)` the projection's
coordinates. Its maximum, `3.32237`, is attained on the manifold at `f(u_opt)`.

Historical designs: `x = f(u) + σ ξ`, `u ~ U[0,1]^6`, `ξ ~ N(0, I_d)`. Their distance is about
`σ sqrt(χ²_{d-k})`; the support check ``on_support`` is `dist ≤ support_radius` (default 0.1,
the 99.5% quantile of `σ sqrt(χ²_10)` for σ = 0.02).

>>> problem = ManifoldProblem()
>>> x = problem.sample_historical(256, torch.Generator().manual_seed(0))   # 256 x 16
>>> problem.value(x).shape, problem.on_support(x).float().mean()
>>> oracle = ManifoldOracle(problem, noise_std=0.05, seed=0)   # a SimulatedOracle
>>> oracle.score(problem.optimizer.numpy())                     # {"value": 3.32237}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from botorch.test_functions import Hartmann
from torch import Tensor

from oracles.errors import OracleConfigError
from oracles.simulated.base import SimulatedOracle

K_MANIFOLD = 6
HARTMANN6_MAX = 3.32237
HARTMANN6_ARGMAX = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)


@dataclass(frozen=True)
class ManifoldProblem:
    """The manifold-designs problem; all parameters are fixed by the fields below.

    Args:
        dim: `d`, ambient design dimension (≥ 10).
        seed: seed of the embedding's random parameters (`W`, `φ`, `Q`).
        amplitude: `a`, size of the curved part.
        frequency: `ω`, how fast the manifold bends.
        noise_std: `σ` of the historical designs around the manifold.
        penalty: weight of `dist²` subtracted from the Hartmann6 value.
        support_radius: designs with `dist ≤ support_radius` count as valid.
        projection_steps: Gauss-Newton iterations of the projection.
    """

    dim: int = 16
    seed: int = 0
    amplitude: float = 0.5
    frequency: float = 1.2
    noise_std: float = 0.02
    penalty: float = 25.0
    support_radius: float = 0.1
    projection_steps: int = 12
    _params: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dim < 10:
            raise OracleConfigError(
                f"dim={self.dim} is too small; the manifold problem needs dim >= 10")
        for name in ("amplitude", "frequency", "noise_std", "support_radius"):
            if not getattr(self, name) > 0:
                raise OracleConfigError(f"{name}={getattr(self, name)} must be > 0")
        if self.penalty < 0 or self.projection_steps < 1:
            raise OracleConfigError(
                f"need penalty >= 0 and projection_steps >= 1; got penalty={self.penalty}, "
                f"projection_steps={self.projection_steps}")
        rng = np.random.default_rng(self.seed)
        m = self.dim - K_MANIFOLD
        W = rng.standard_normal((m, K_MANIFOLD))
        W /= np.linalg.norm(W, axis=1, keepdims=True)
        phase = rng.uniform(0, 2 * np.pi, m)
        Q, R = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        Q *= np.sign(np.diag(R))  # a proper Haar draw, independent of LAPACK sign choices
        object.__setattr__(self, "_params", {
            "W": torch.from_numpy(W), "phase": torch.from_numpy(phase), "Q": torch.from_numpy(Q),
        })

    # -- geometry ------------------------------------------------------------------------------
    def _p(self, name: str, like: Tensor) -> Tensor:
        return self._params[name].to(device=like.device, dtype=like.dtype)

    def _h(self, z: Tensor) -> Tensor:
        arg = self.frequency * z @ self._p("W", z).T + self._p("phase", z)
        return torch.cat([z, self.amplitude * torch.sin(arg)], dim=-1)

    def embed(self, u: Tensor) -> Tensor:
        """`f(u)`: `B x 6`-dim coordinates in `[0, 1]` → `B x d`-dim designs on the manifold."""
        u = torch.as_tensor(u, dtype=torch.float64)
        return self._h(2 * u - 1) @ self._p("Q", u).T

    def project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest manifold point's coordinates and distance: `B x d` → (`B x 6`, `B`).

        Steps: 1. `y = Qᵀx`; 2. `z = clip(y_{1:6}, -1, 1)`; 3. repeat ``projection_steps``
        times `z ← clip(z + (JᵀJ)^{-1} Jᵀ (y - h(z)), -1, 1)`; 4. `u = (z + 1)/2`,
        `dist = ||y - h(z)||`. Computed in float64 numpy (tiny batched solves: torch's thread
        pool makes them ~10x slower on a shared CPU), no gradients; returns float64 Tensors.
        """
        x = self._as_designs(x)
        P = {k: v.numpy() for k, v in self._params.items()}
        W, phase, a, w = P["W"], P["phase"], self.amplitude, self.frequency
        y = x.detach().cpu().numpy() @ P["Q"]
        z = np.clip(y[:, :K_MANIFOLD], -1, 1)

        def h(z: np.ndarray) -> np.ndarray:
            return np.concatenate([z, a * np.sin(w * z @ W.T + phase)], axis=1)

        eye = np.eye(K_MANIFOLD)
        for _ in range(self.projection_steps):
            r = y - h(z)
            N = (a * w * np.cos(w * z @ W.T + phase))[:, :, None] * W  # B x m x k
            Nt = N.transpose(0, 2, 1)
            JtJ = eye + Nt @ N
            Jtr = r[:, :K_MANIFOLD] + (Nt @ r[:, K_MANIFOLD:, None])[:, :, 0]
            z = np.clip(z + np.linalg.solve(JtJ, Jtr[:, :, None])[:, :, 0], -1, 1)
        dist = np.linalg.norm(y - h(z), axis=1)
        return torch.from_numpy((z + 1) / 2), torch.from_numpy(dist)

    def distance(self, x: Tensor) -> Tensor:
        """`dist(x)`, distance to the manifold: `B x d` → `B` (float64)."""
        return self.project(x)[1]

    def on_support(self, x: Tensor) -> Tensor:
        """`B`-dim bool Tensor: `dist(x) ≤ support_radius`."""
        return self.distance(x) <= self.support_radius

    # -- objective -----------------------------------------------------------------------------
    def value(self, x: Tensor) -> Tensor:
        """`y(x) = -Hartmann6(u*(x)) - penalty · dist(x)²` (maximize): `B x d` → `B` float64."""
        u, dist = self.project(x)
        return Hartmann(dim=6, negate=True)(u) - self.penalty * dist**2

    @property
    def optimal_value(self) -> float:
        """`max_x y(x) = 3.32237`, at ``self.optimizer``."""
        return HARTMANN6_MAX

    @property
    def optimizer(self) -> Tensor:
        """`d`-dim float64 Tensor `f(u_opt)`, the design of maximal value."""
        return self.embed(torch.tensor([HARTMANN6_ARGMAX], dtype=torch.float64))[0]

    # -- data ----------------------------------------------------------------------------------
    def sample_historical(self, num: int, generator: torch.Generator) -> Tensor:
        """`num x d` float64 historical designs `f(u) + σ ξ`, `u ~ U[0,1]^6`, `ξ ~ N(0, I)`."""
        u = torch.rand(num, K_MANIFOLD, generator=generator, dtype=torch.float64)
        xi = torch.randn(num, self.dim, generator=generator, dtype=torch.float64)
        return self.embed(u) + self.noise_std * xi

    def _as_designs(self, x: Tensor) -> Tensor:
        x = torch.as_tensor(x)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"manifold designs must be B x {self.dim} (or {self.dim}) vectors; got shape "
                f"{tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("manifold designs contain NaN or infinite entries; send finite numbers")
        return x.to(torch.float64)


class ManifoldOracle(SimulatedOracle):
    """The manifold problem as a simulated oracle: one objective ``value`` = `y(x)`, maximized.

    Args:
        problem: the ``ManifoldProblem`` (default: ``ManifoldProblem()``, `d = 16`).
        objective: name of the single objective.
        latency_s, noise_std, failure_rate, seed: see :class:`SimulatedOracle`.
    """

    def __init__(self, problem: ManifoldProblem | None = None, *, objective: str = "value",
                 latency_s: float = 0.0, noise_std: float = 0.0, failure_rate: float = 0.0,
                 seed: int = 0) -> None:
        self.problem = problem or ManifoldProblem()
        self.objectives = (objective,)
        super().__init__(latency_s=latency_s, noise_std=noise_std, failure_rate=failure_rate,
                         seed=seed, name=f"manifold{self.problem.dim}")

    @property
    def design_shape(self) -> tuple[int, ...]:
        """``(dim,)``, ``(16,)`` by default: the bundled manifold prior's shape."""
        return (self.problem.dim,)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        """A finite vector of ``problem.dim`` numbers (any array shape with that many entries)."""
        design = super().check_design(design)
        if design.size != self.problem.dim:
            raise ValueError(
                f"design must have shape ({self.problem.dim},): expected a design of "
                f"{self.problem.dim} numbers, got shape {design.shape}")
        return design.reshape(self.problem.dim)

    def score(self, design: np.ndarray) -> dict[str, float]:
        """`{objective: y(x)}` for one checked design."""
        return {self.objectives[0]: float(self.problem.value(torch.from_numpy(design))[0])}
