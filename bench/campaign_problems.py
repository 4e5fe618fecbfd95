"""Benchmark problems of ``bench/campaigns.py``: a bundled prior, its oracle, its support rule.

Every problem is maximized and noise-free (the benchmark compares methods on the true value):

* ``manifold`` — the bundled manifold prior (`d = 16`) and ``ManifoldOracle`` (Hartmann6 in
  manifold coordinates minus `25 · dist²`); support: distance to the manifold ≤ its radius.
* ``digits`` — the bundled digits prior (`1 x 8 x 8` in `[-1, 1]`) and ``DigitScorerOracle``:
  the log-odds of "3" under a logistic regression on ``load_digits`` (real 3s: median 3.7, best
  7.3) minus `25 · max(0, d − r)²`, `d` the pixel distance to the nearest real digit and `r` its
  95% quantile among real digits — a lab that can only make digit-like images (without it the
  linear scorer is maximized by high-contrast non-digits in a corner of the box). Support: the
  bundled digit classifier's confidence ≥ 0.5, a different model from the oracle's. Raw-space
  optimizers get the box of the real 8x8 digits, i.e. `[-1, 1]^64`.
* ``gmm-toy`` — the paper's 9-mode mixture with `r = -x²/100 - y²`; support: squared
  Mahalanobis distance to the nearest mode ≤ `χ²_2(0.99)`.

``historical`` holds the designs a raw-space optimizer's box is taken from (min / max per
coordinate): the data the prior was trained on (or, for the toy, draws of the mixture).

>>> p = load_problem("gmm-toy")
>>> p.value(p.historical[:4]).shape
torch.Size([4])
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

PROBLEMS = ("manifold", "digits", "gmm-toy")


@dataclass(frozen=True)
class Problem:
    """One benchmark problem (see the module docstring).

    Attributes:
        name: ``"manifold"``, ``"digits"`` or ``"gmm-toy"``.
        prior: the loaded ``DiffusionPrior`` (CPU, float32).
        feature_map: the surrogate's `φ` (the prior's own map from the registry).
        support: the registry's ``SupportCheck`` (``support.description`` states the rule).
        oracle_value: `B x *design_shape` → `B`-dim float64 Tensor, the true value (maximized).
        historical: `N x *design_shape` designs that define the raw-space box.
        design_shape: shape of one design.
        optimum: the known maximum, or None.
        design_range: the valid range of every coordinate, if the design space has one.
    """

    name: str
    prior: Any
    feature_map: Any
    support: Any
    oracle_value: Callable[[Tensor], Tensor]
    historical: Tensor
    design_shape: tuple[int, ...]
    optimum: float | None = None
    design_range: tuple[float, float] | None = None

    def value(self, designs: Tensor) -> Tensor:
        """True oracle values of `B x *design_shape` designs: `B`-dim float64 Tensor."""
        return self.oracle_value(designs.detach().to(torch.float64).cpu())

    def on_support(self, designs: Tensor) -> Tensor:
        """`B`-dim bool Tensor: True where the design satisfies ``support``."""
        with torch.no_grad():
            return self.support(designs.detach().to(torch.float32).cpu()).cpu()

    def bounds(self) -> Tensor:
        """`2 x D` box (flattened design) of the historical designs: min and max per coordinate.

        A coordinate constant in the data (the digits' blank corner pixels) gets
        ``design_range`` instead, so the box has no zero-width side.
        """
        flat = self.historical.reshape(len(self.historical), -1).to(torch.float64)
        lo, hi = flat.min(0).values, flat.max(0).values
        flat_side = (hi - lo) < 1e-6
        if flat_side.any():
            if self.design_range is None:
                raise ValueError(f"problem {self.name!r}: coordinates "
                                 f"{flat_side.nonzero().flatten().tolist()[:8]} are constant in "
                                 "the historical designs; give the problem a design_range")
            lo = torch.where(flat_side, torch.full_like(lo, self.design_range[0]), lo)
            hi = torch.where(flat_side, torch.full_like(hi, self.design_range[1]), hi)
        return torch.stack([lo, hi])


def load_problem(name: str) -> Problem:
    """Build the problem ``name`` (one of ``PROBLEMS``); raises ``ValueError`` naming the choices."""
    from optimizer.priors.registry import BUNDLED

    if name not in PROBLEMS:
        raise ValueError(f"--problems: unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    entry = BUNDLED[name]
    prior = entry.load(device="cpu")
    common = {"prior": prior, "feature_map": entry.feature_map(device="cpu"),
              "support": entry.support_check(device="cpu"), "design_shape": entry.design_shape}
    if name == "manifold":
        return _manifold(common)
    if name == "digits":
        return _digits(common)
    return _gmm_toy(common)


def _manifold(common: dict[str, Any]) -> Problem:
    from oracles.simulated.manifold import ManifoldOracle

    oracle = ManifoldOracle()
    hist = oracle.problem.sample_historical(4096, torch.Generator().manual_seed(0))
    # the oracle's own vectorized objective (``ManifoldOracle.score`` is one row at a time)
    return Problem("manifold", oracle_value=oracle.problem.value, historical=hist,
                   optimum=oracle.problem.optimal_value, **common)


def _digits(common: dict[str, Any]) -> Problem:
    from sklearn.datasets import load_digits

    from oracles.simulated.digits import DigitScorerOracle

    # log-odds: p itself saturates (any clean 3 scores > 0.98); the off-data penalty makes the
    # oracle a lab's: images far from every real digit cannot be made (see DigitScorerOracle)
    oracle = DigitScorerOracle.lab(target_digit=3, seed=0)
    images = torch.from_numpy(load_digits().images).to(torch.float64)[:, None] / 8.0 - 1.0

    def value(x: Tensor) -> Tensor:
        pixels = np.stack([oracle.check_design(p) for p in x.numpy()])
        return torch.from_numpy(oracle.values(pixels))

    return Problem("digits", oracle_value=value, historical=images, optimum=None,
                   design_range=(-1.0, 1.0), **common)


def _gmm_toy(common: dict[str, Any]) -> Problem:
    from optimizer.priors.registry import gmm_toy_means, gmm_toy_reward

    g = torch.Generator().manual_seed(0)
    means = gmm_toy_means()
    idx = torch.randint(0, 9, (4096,), generator=g)
    hist = means[idx] + 0.3 ** 0.5 * torch.randn(4096, 2, generator=g, dtype=torch.float64)
    return Problem("gmm-toy", oracle_value=gmm_toy_reward, historical=hist, optimum=0.0,
                   **common)


def mean_pairwise_distance(designs: Tensor) -> float:
    """Mean Euclidean distance between the distinct pairs of a `q x *design_shape` batch."""
    flat = designs.detach().reshape(len(designs), -1).to(torch.float64)
    if len(flat) < 2:
        return float("nan")
    d = torch.cdist(flat, flat)
    n = len(flat)
    return float(d.sum() / (n * (n - 1)))


def as_numpy(t: Tensor) -> np.ndarray:
    """A float64 numpy copy of a Tensor."""
    return t.detach().cpu().to(torch.float64).numpy()
