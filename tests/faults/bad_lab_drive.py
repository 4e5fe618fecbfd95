"""Drive queries against a :class:`faults.bad_lab.BadLab` with the real dispatcher and HTTP
oracle, under small limits: shared by ``tests/faults/test_bad_replies.py`` and ``bench/chaos.py``.

    >>> st = reply_storage(url, n=2)                       # doctest: +SKIP
    >>> with BadLab("nan") as lab:                         # doctest: +SKIP
    ...     passes = drive(dispatcher(st, lab.url), st)
"""
from __future__ import annotations

import threading

import numpy as np

from optimizer.campaign.dispatch import Dispatcher
from optimizer.campaign.query_limits import QueryLimits
from oracles.factory import build_oracle
from storage import NewCandidate, Storage
from storage.migrate import upgrade

CAMPAIGN = "chaos-replies"
SUBMITS, TRIES = 3, 2  # dispatcher submissions of a key; client tries per request
MAX_JOB_AGE_S = 1.0


def reply_storage(url: str, n: int = 2) -> Storage:
    """A fresh store at ``url`` holding campaign :data:`CAMPAIGN` with ``n`` pending queries."""
    upgrade(url)
    st = Storage.open(url)
    st.create_campaign(CAMPAIGN, {"note": "bad replies"})
    st.record_round(CAMPAIGN, 0, alpha=1.0,
                    candidates=[NewCandidate(np.array([float(i), 0.5])) for i in range(n)],
                    selected=list(range(n)), oracle_name="lab")
    return st


def dispatcher(st: Storage, url: str) -> Dispatcher:
    """The dispatcher of :data:`CAMPAIGN` over the HTTP oracle at ``url``: :data:`TRIES` tries
    per request (1 s each), :data:`SUBMITS` submissions per key, a job age limit of 1 s, no backoff (and a
    ``Retry-After`` capped at 0.05 s)."""
    oracle = build_oracle("http", {"base_url": url, "objectives": ["y"], "timeout_s": 1.0,
                                   "retry": {"max_attempts": TRIES, "backoff_base_s": 0.0,
                                             "backoff_max_s": 0.0, "retry_after_max_s": 0.05}})
    limits = QueryLimits(max_submit_attempts=SUBMITS, max_job_age_s=MAX_JOB_AGE_S, backoff_s=0.0,
                         backoff_max_s=0.0)
    return Dispatcher(st, CAMPAIGN, oracle, objectives=["y"], limit=8, limits=limits)


def drive(d: Dispatcher, st: Storage, passes: int = 400, *, campaign: str = CAMPAIGN) -> int:
    """Dispatch and poll until ``campaign`` has nothing in flight; the number of passes it took.

    Raises:
        AssertionError: still in flight after ``passes`` passes (a query stuck: a bug).
    """
    for i in range(passes):
        d.dispatch()
        d.poll()
        if st.in_flight_count(campaign) == 0:
            return i + 1
        threading.Event().wait(0.02)
    raise AssertionError(f"still in flight after {passes} passes: {st.query_counts(campaign)}")
