"""Simulated oracles for the campaign tests (importable by module name from this folder)."""
from __future__ import annotations

from typing import Any

import numpy as np

from oracles.simulated.base import SimulatedOracle


class Bowl(SimulatedOracle):
    """`y = -||x - c||²` on R^2 (any real design is valid): a known optimum for loop tests."""

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("y",)
        super().__init__(**kw)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.shape != (2,):
            raise ValueError(f"expected a design of shape (2,), got {design.shape}")
        return design

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": -float(((design - np.array([1.0, -0.5])) ** 2).sum())}


class TwoBowls(SimulatedOracle):
    """Two conflicting objectives on R^2: ``near`` = `−||x − a||²` (maximize) and ``cost`` =
    `||x − b||²` (minimize), `a = (1, −0.5)`, `b = (−1, 0.5)`: the Pareto set is the segment from
    `a` to `b` (a known front for multi-objective loop tests)."""

    A = np.array([1.0, -0.5])
    B = np.array([-1.0, 0.5])

    def __init__(self, **kw: Any) -> None:
        self.objectives = ("near", "cost")
        super().__init__(**kw)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.shape != (2,):
            raise ValueError(f"expected a design of shape (2,), got {design.shape}")
        return design

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"near": -float(((design - self.A) ** 2).sum()),
                "cost": float(((design - self.B) ** 2).sum())}
