"""``[[constraints]]`` of a campaign config: outcome constraints on outputs the oracle reports.

A design is feasible when every constraint holds on its reported values; an infeasible result is
stored like any other (it trains the surrogate) but is never the campaign's best:

    [[constraints]]
    name = "toxicity"          # an output the oracle reports, like an objective
    op = "<="
    bound = 0.2

The surrogate models each constraint output with its own GP, on the signed slack
`c(x) = value − bound` for ``<=`` and `bound − value` for ``>=`` (BoTorch's convention:
feasible ⇔ `c(x) ≤ 0`; ``optimizer.surrogate.constraints``).

>>> ConstraintConfig(name="tox", op="<=", bound=0.2).holds(0.1)
True
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field


class ConstraintConfig(BaseModel):
    """One outcome constraint: the oracle's output ``name`` must be ``op`` ``bound``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=128,
                      description="an output the oracle reports (listed in its objectives)")
    op: Literal["<=", ">="] = Field(description='"<=" (at most bound) or ">=" (at least bound)')
    bound: float = Field(description="the threshold (a finite number)")

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the constraint (a NaN never does)."""
        if not math.isfinite(value):
            return False
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def slack(self, value: float | npt.NDArray[np.float64]) -> float | npt.NDArray[np.float64]:
        """`c = value − bound` (``<=``) or `bound − value` (``>=``), elementwise on arrays:
        feasible ⇔ `c ≤ 0`."""
        return value - self.bound if self.op == "<=" else self.bound - value


def constraint_names(raw: Any) -> list[str]:
    """The ``name`` of every well-formed entry of a raw ``constraints`` list (before
    validation: the oracle's output names are filled from them)."""
    if not isinstance(raw, list):
        return []
    return [c["name"] for c in raw if isinstance(c, dict) and isinstance(c.get("name"), str)]


def check_constraints(constraints: Sequence[ConstraintConfig], objectives: Sequence[str],
                      reported: Sequence[str], oracle_kind: str) -> None:
    """The cross-field rules: unique names, none an objective, each reported by the oracle.

    Raises:
        ValueError: tagged ``[constraints.I.name]`` (the field of the first problem).
    """
    seen: set[str] = set()
    for i, c in enumerate(constraints):
        where = f"[constraints.{i}.name]"
        if c.name in seen:
            raise ValueError(f"{where} constraint {c.name!r} is given twice; give each output "
                             "one constraint (two bounds on one output: not supported)")
        seen.add(c.name)
        if c.name in objectives:
            raise ValueError(f"{where} {c.name!r} is an objective; a constraint names another "
                             "output the oracle reports")
        if c.name not in reported:
            raise ValueError(
                f"{where} the {oracle_kind!r} oracle reports {list(reported)}, not {c.name!r}; "
                "list the constraint output in [oracle] objectives (a simulated oracle reports "
                "one objective only)")


def recorded_outputs(config: Any) -> list[str]:
    """The output names a result must carry: the objectives, then the constraint outputs
    (the dispatcher refuses a result missing any of them, as for a missing objective)."""
    return [o.name for o in config.objectives] + [c.name for c in config.constraints]


def is_feasible(values: Mapping[str, float] | None,
                constraints: Sequence[ConstraintConfig]) -> bool | None:
    """True when every constraint holds on ``values``; None without values (no result)."""
    if values is None:
        return None
    for c in constraints:
        v = values.get(c.name)
        if v is None or not c.holds(float(v)):
            return False
    return True


def feasibility_counts(records: Any, constraints: Sequence[ConstraintConfig]) -> dict[str, int]:
    """``{"feasible": n, "infeasible": m}`` over the records with values (succeeded results)."""
    flags = [is_feasible(q.values, constraints) for q in records]
    return {"feasible": sum(1 for f in flags if f is True),
            "infeasible": sum(1 for f in flags if f is False)}


def stored_constraints(config: Mapping[str, Any] | None) -> list[ConstraintConfig]:
    """The constraints of a stored config JSON (none for a campaign stored before them)."""
    raw = (config or {}).get("constraints") or []
    return [ConstraintConfig.model_validate(c) for c in raw]
