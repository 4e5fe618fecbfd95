"""Budget guards: stop spending a paid oracle's budget on queries that keep failing.

A driver feeds every poll's finished queries to :class:`BudgetGuard`; it trips when

1. ``max_consecutive_failures`` queries failed in a row (in the order the oracle finished them), or
2. more than ``max_failure_fraction`` of one round's queries failed.

The driver then stops dispatching, marks the campaign ``paused`` with the grouped failure reasons
and returns; ``tiltloop resume`` continues once the cause is fixed. Counters start at zero in each
driver, so a resumed campaign gets a fresh allowance (at most one more guard's worth of queries).

    >>> guard = BudgetGuard(config.budget)                         # doctest: +SKIP
    >>> trip = guard.observe(finished_records, round_sizes)        # doctest: +SKIP
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from optimizer.campaign.config import BudgetConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class GuardTrip:
    """Why the guard stopped the campaign: ``rule`` ("consecutive" or "fraction") and a sentence."""

    rule: str
    message: str
    keys: tuple[str, ...]


class BudgetGuard:
    """Counts failures of one driver's lifetime and says when to pause (see the module doc)."""

    def __init__(self, budget: BudgetConfig) -> None:
        self.max_consecutive = budget.max_consecutive_failures
        self.max_fraction = budget.max_failure_fraction
        self.consecutive: list[str] = []
        self.failed_per_round: Counter[int] = Counter()

    def observe(self, finished: Iterable[Any], round_sizes: Mapping[int, int]) -> GuardTrip | None:
        """Feed finished query records (``status``, ``key``, ``round_index``, ``finished_at``);
        ``round_sizes[r]`` is the number of queries of round ``r``. Returns a trip or None."""
        ordered = sorted(finished, key=lambda q: (q.finished_at or _EPOCH, q.key))
        trip: GuardTrip | None = None
        for q in ordered:
            if q.status == "failed":
                self.consecutive.append(q.key)
                self.failed_per_round[q.round_index] += 1
            elif q.status == "succeeded":
                self.consecutive.clear()
            if trip is None and len(self.consecutive) >= self.max_consecutive:
                trip = GuardTrip("consecutive", f"{len(self.consecutive)} oracle queries failed in a "
                                 f"row (budget.max_consecutive_failures = {self.max_consecutive})",
                                 tuple(self.consecutive))
        if trip is not None:
            return trip
        for r, failed in sorted(self.failed_per_round.items()):
            size = round_sizes.get(r, 0)
            if size and failed / size > self.max_fraction:
                return GuardTrip("fraction", f"{failed} of round {r}'s {size} queries failed "
                                 f"(more than budget.max_failure_fraction = {self.max_fraction:g})",
                                 ())
        return None
