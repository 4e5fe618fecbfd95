"""Simulated oracles for the campaign tests (importable by module name from this folder)."""
from __future__ import annotations

from typing import Any

import numpy as np

from oracles.simulated.base import SimulatedOracle


class _Plane(SimulatedOracle):
    """Designs are points of R^2 (any real pair is valid)."""

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.shape != (2,):
            raise ValueError(f"expected a design of shape (2,), got {design.shape}")
        return design


class Bowl(_Plane):
    """`y = -||x - c||²` on R^2 (any real design is valid): a known optimum for loop tests."""

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("y",)
        super().__init__(**kw)

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": -float(((design - np.array([1.0, -0.5])) ** 2).sum())}


class TwoBowls(_Plane):
    """Two conflicting objectives on R^2: ``near`` = `−||x − a||²` (maximize) and ``cost`` =
    `||x − b||²` (minimize), `a = (1, −0.5)`, `b = (−1, 0.5)`: the Pareto set is the segment from
    `a` to `b` (a known front for multi-objective loop tests)."""

    A = np.array([1.0, -0.5])
    B = np.array([-1.0, 0.5])

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("near", "cost")
        super().__init__(**kw)

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"near": -float(((design - self.A) ** 2).sum()),
                "cost": float(((design - self.B) ** 2).sum())}


class TwoBowlsTox(TwoBowls):
    """``TwoBowls`` plus a constraint output ``tox`` = `x₀` (with `tox ≤ 0`, the half plane
    `x₀ > 0` is infeasible: half of the ``gmm-toy`` prior's mass by symmetry, and the part of the
    unconstrained front nearest `a`, which has the best ``near``)."""

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("near", "cost", "tox")
        _Plane.__init__(self, **kw)  # (TwoBowls would set its own two outputs)

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {**super().score(design), "tox": float(design[0])}


class TwoBumps(_Plane):
    """`y = e^{−|x − (4, 4)|²/8} + 0.8 e^{−|x − (−4, −4)|²/8}` and `c = x₀` on the ``gmm-toy``
    prior's plane (modes at `{−4, 0, 4}²`): with `c ≤ 0`, the higher bump is infeasible and half
    the prior's mass (by symmetry) too."""

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("y", "c")
        super().__init__(**kw)

    def score(self, design: np.ndarray) -> dict[str, float]:
        far = float(np.exp(-((design - 4.0) ** 2).sum() / 8))
        near = float(np.exp(-((design + 4.0) ** 2).sum() / 8))
        return {"y": far + 0.8 * near, "c": float(design[0])}
