"""BoTorch's synthetic test functions as simulated oracles.

Design space: the UNIT CUBE `[0, 1]^d`. A design `u` is mapped to the function's box by
`x = lb + u · (ub − lb)` (``bounds`` defaults to BoTorch's standard domain of each function), so
every function looks the same to the optimizer. Designs outside the unit cube (beyond ``1e-9``) or
of the wrong length fail with a reason.

Sign: tiltloop MAXIMIZES. BoTorch's functions are minimization problems, so ``negate=True``
(the default) reports `y = −f(x)`; the best value is then `−f*` (e.g. `−0.397887` for Branin).

>>> oracle = BoTorchFunctionOracle("branin", noise_std=0.0, seed=0)
>>> oracle.optimal_value
-0.397887...
"""
from __future__ import annotations

from typing import cast

import numpy as np
import torch
from botorch.test_functions import synthetic

from oracles.errors import OracleConfigError
from oracles.simulated.base import SimulatedOracle

FUNCTIONS: dict[str, type[synthetic.SyntheticTestFunction]] = {
    "ackley": synthetic.Ackley,
    "branin": synthetic.Branin,
    "dixon_price": synthetic.DixonPrice,
    "griewank": synthetic.Griewank,
    "hartmann": synthetic.Hartmann,
    "levy": synthetic.Levy,
    "michalewicz": synthetic.Michalewicz,
    "powell": synthetic.Powell,
    "rastrigin": synthetic.Rastrigin,
    "rosenbrock": synthetic.Rosenbrock,
    "six_hump_camel": synthetic.SixHumpCamel,
    "styblinski_tang": synthetic.StyblinskiTang,
}
# convenient aliases with their dimension fixed
ALIASES: dict[str, tuple[str, int]] = {"hartmann6": ("hartmann", 6), "hartmann3": ("hartmann", 3)}


class BoTorchFunctionOracle(SimulatedOracle):
    """A BoTorch synthetic function on the unit cube, maximized (see module docstring).

    Args:
        function: a name in ``FUNCTIONS`` or ``ALIASES`` (case-insensitive, '-' or '_').
        dim: dimension for the functions that take one (default: BoTorch's default).
        bounds: ``[(lb, ub)] * dim`` box the unit cube is mapped to (default: BoTorch's).
        negate: report `−f(x)` (True, the maximization convention) or `f(x)`.
        objective: name of the single objective.
        latency_s, noise_std, failure_rate, seed: see :class:`SimulatedOracle`.
    """

    def __init__(self, function: str = "branin", *, dim: int | None = None,
                 bounds: list[tuple[float, float]] | None = None, negate: bool = True,
                 objective: str = "y", latency_s: float = 0.0, noise_std: float = 0.0,
                 failure_rate: float = 0.0, seed: int = 0) -> None:
        name = function.lower().replace("-", "_")
        if name in ALIASES:
            name, alias_dim = ALIASES[name]
            if dim not in (None, alias_dim):
                raise OracleConfigError(f"function {function!r} has dim {alias_dim}, got dim={dim}")
            dim = alias_dim
        if name not in FUNCTIONS:
            raise OracleConfigError(f"unknown function {function!r}; choose one of "
                                    f"{sorted([*FUNCTIONS, *ALIASES])}")
        cls = FUNCTIONS[name]
        kwargs: dict = {"negate": False, "bounds": bounds}
        if dim is not None:
            if getattr(cls, "dim", None) is not None and "dim" not in cls.__init__.__code__.co_varnames:
                if dim != cls.dim:
                    raise OracleConfigError(f"function {name!r} has fixed dim {cls.dim}, got "
                                            f"dim={dim}")
            else:
                kwargs["dim"] = dim
        try:
            self.function = cls(**kwargs)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise OracleConfigError(f"function {name!r} with dim={dim}, bounds={bounds}: "
                                    f"{exc}") from None
        self.function_name = name
        self.dim = int(self.function.dim)
        self.negate = bool(negate)
        self.objectives = (objective,)
        box = cast(torch.Tensor, self.function.bounds)  # a registered buffer, typed Tensor | Module
        self._lb = box[0].numpy().astype(np.float64)
        self._ub = box[1].numpy().astype(np.float64)
        super().__init__(latency_s=latency_s, noise_std=noise_std, failure_rate=failure_rate,
                         seed=seed, name=f"{name}{self.dim}")

    @property
    def optimal_value(self) -> float | None:
        """The best achievable objective under the sign convention, when BoTorch knows it."""
        try:
            value = float(self.function.optimal_value)
        except (NotImplementedError, AttributeError, TypeError):
            return None
        return -value if self.negate else value

    @property
    def design_shape(self) -> tuple[int, ...]:
        """``(dim,)``: a `d` vector in the unit cube."""
        return (self.dim,)

    def to_bounds(self, unit: np.ndarray) -> np.ndarray:
        """Map `d` unit-cube coordinates to the function's box: `lb + u (ub − lb)`."""
        return self._lb + np.asarray(unit, dtype=np.float64) * (self._ub - self._lb)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.shape != (self.dim,):
            raise ValueError(f"design must have shape ({self.dim},), got {design.shape}")
        if design.min() < -1e-9 or design.max() > 1 + 1e-9:
            raise ValueError(f"design must lie in the unit cube [0, 1]^{self.dim} (mapped to the "
                             f"function's bounds), got values in [{design.min():.4g}, "
                             f"{design.max():.4g}]")
        return np.clip(design, 0.0, 1.0)

    def score(self, design: np.ndarray) -> dict[str, float]:
        x = torch.as_tensor(self.to_bounds(design), dtype=torch.float64).unsqueeze(0)
        with torch.no_grad():
            value = float(self.function.evaluate_true(x).item())
        return {self.objectives[0]: -value if self.negate else value}
