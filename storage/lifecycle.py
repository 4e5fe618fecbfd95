"""The oracle-query lifecycle: which transitions exist and what each must carry.

`pending → dispatched → running → succeeded | failed | cancelled`, plus:

- ``pending → failed | cancelled`` (refused before dispatch);
- ``dispatched → succeeded | failed | cancelled`` (fast oracles skip ``running``);
- ``dispatched → pending`` only while no job id is stored (the submission never reached the
  oracle; it is retried with the same idempotency key).

Terminal states have no way out: a result is written exactly once.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from storage.errors import InvalidTransition, InvalidValue
from storage.models import QUERY_STATUSES

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"dispatched", "failed", "cancelled"}),
    "dispatched": frozenset({"running", "succeeded", "failed", "cancelled", "pending"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def check_transition(key: str, expected: str, new: str) -> None:
    """Raise :class:`InvalidTransition` unless ``expected → new`` is a lifecycle edge."""
    for name, status in (("expected", expected), ("new", new)):
        if status not in QUERY_STATUSES:
            raise InvalidTransition(
                f"query {key!r}: {name} status {status!r} is not one of {', '.join(QUERY_STATUSES)}"
            )
    if new not in ALLOWED[expected]:
        allowed = ", ".join(sorted(ALLOWED[expected])) or "none (terminal)"
        raise InvalidTransition(
            f"query {key!r}: transition {expected} -> {new} is not allowed; from {expected} "
            f"the allowed next states are: {allowed}"
        )


def check_objectives(values: Mapping[str, Any] | None, *, key: str, field: str) -> dict[str, float] | None:
    """``{objective: finite float}`` or :class:`InvalidValue` naming the query and objective."""
    if values is None:
        return None
    if not isinstance(values, Mapping) or not values:
        raise InvalidValue(f"query {key!r}: {field} must be a non-empty dict objective -> number, "
                           f"got {values!r}")
    out: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise InvalidValue(f"query {key!r}: {field} objective name {name!r} must be a string")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidValue(f"query {key!r}: {field}[{name!r}] = {value!r} is not a number") from None
        if not math.isfinite(number):
            raise InvalidValue(
                f"query {key!r}: {field}[{name!r}] = {value!r} is not finite; mark the query "
                f"failed with this reason instead"
            )
        out[name] = number
    return out
