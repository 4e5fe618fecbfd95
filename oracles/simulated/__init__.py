"""Simulated oracles: seeded stand-ins for a lab, for demos, tests and benchmarks."""
from oracles.simulated.base import SimulatedOracle, key_rng
from oracles.simulated.botorch_functions import FUNCTIONS, BoTorchFunctionOracle
from oracles.simulated.digits import DigitScorerOracle

__all__ = ["FUNCTIONS", "BoTorchFunctionOracle", "DigitScorerOracle", "SimulatedOracle", "key_rng"]
