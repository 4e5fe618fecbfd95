"""Per-query limits of the dispatcher: how often one key is resubmitted, how long a job may stay
at the oracle without a final answer, and how long to wait between resubmissions.

Without them a lab that answers 2xx without a job id (or any client-side error on submit) made
the dispatcher resubmit the same key forever, and a job the lab kept answering with 5xx, 429,
invalid JSON or not at all stayed ``running`` forever. With them every such query ends
``failed`` with the reason, and the campaign's budget guards (``optimizer.campaign.guards``)
decide whether to pause.

Backoff: the FIRST resubmission of a key is immediate (the usual cause is benign: a lab that
restarted and lost its jobs, or a driver killed between dispatch and storing the handle); the
n-th submission after that waits ``min(max, base · 2^(n−3)) · U(0.5, 1)`` seconds (jitter keeps
many keys from retrying in lockstep).

    >>> limits = QueryLimits.from_config(config)            # doctest: +SKIP
    >>> limits.delay_before(3, random.Random(0))            # doctest: +SKIP
    1.69...
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueryLimits:
    """Limits of one dispatcher (see the module docstring).

    Args:
        max_submit_attempts: submissions of one key in all (the first included), counted in the
            query row's ``attempts`` column; past it the query fails.
        max_job_age_s: seconds since the first dispatch without a final answer before the query
            fails (and the job is cancelled at the oracle, best effort); None: no limit.
        backoff_s / backoff_max_s: base and cap of the wait between resubmissions of one key.
    """

    max_submit_attempts: int = 10
    max_job_age_s: float | None = None
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.max_submit_attempts, bool) or self.max_submit_attempts < 1:
            raise ValueError(f"max_submit_attempts must be an integer >= 1, got "
                             f"{self.max_submit_attempts!r}")
        if self.max_job_age_s is not None and not 0 < self.max_job_age_s < float("inf"):
            raise ValueError(f"max_job_age_s must be a finite number > 0 or None, got "
                             f"{self.max_job_age_s!r}")
        if not (0 <= self.backoff_s < float("inf") and 0 <= self.backoff_max_s < float("inf")):
            raise ValueError("backoff_s and backoff_max_s must be finite numbers >= 0")

    @classmethod
    def from_config(cls, config: Any) -> QueryLimits:
        """The limits of a campaign config's ``[budget]``. A ``manual`` oracle has no job age
        limit: a person answers when the measurement is done (``tell``), and a dispatcher that
        failed their queries meanwhile would throw the measurement away."""
        budget = config.budget
        manual = getattr(config.oracle, "kind", None) == "manual"
        return cls(max_submit_attempts=budget.max_submit_attempts,
                   max_job_age_s=None if manual else budget.max_job_age_s,
                   backoff_s=budget.resubmit_backoff_s, backoff_max_s=budget.resubmit_backoff_max_s)

    def delay_before(self, submission: int, rng: random.Random) -> float:
        """Seconds to wait before submission number ``submission`` (1-based) of one key."""
        if submission <= 2:
            return 0.0
        backoff = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(submission - 3, 60))
        return backoff * (0.5 + 0.5 * rng.random())
