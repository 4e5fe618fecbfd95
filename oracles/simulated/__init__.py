"""Simulated oracles: seeded stand-ins for a lab, for demos, tests and benchmarks.

Submodules load on first use, so ``from oracles.simulated.base import SimulatedOracle`` does not
pull in BoTorch or scikit-learn.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SimulatedOracle": "oracles.simulated.base",
    "key_rng": "oracles.simulated.base",
    "FUNCTIONS": "oracles.simulated.botorch_functions",
    "BoTorchFunctionOracle": "oracles.simulated.botorch_functions",
    "DigitScorerOracle": "oracles.simulated.digits",
    "ManifoldOracle": "oracles.simulated.manifold",
    "ManifoldProblem": "oracles.simulated.manifold",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oracles.simulated' has no attribute {name!r}")
