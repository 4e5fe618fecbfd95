"""Exactly-once dispatch: outbox rows → oracle jobs → stored results.

The order of writes is what makes a crash at any instant safe:

1. the query row exists (``pending``, committed with its round) before the oracle hears of it;
2. ``pending → dispatched`` is committed (one attempt counted) *before* ``submit``;
3. ``submit`` with the query's idempotency key; the handle is saved right away: the job id
   column, plus an audit event when the handle carries more than its id (or a resubmission got
   a new id, which the column never overwrites);
4. ``poll`` by handle; each result is written with a conditional transition, exactly once.

The handles a submit returned are kept in memory before any of them is written: when the
database connection breaks while they are being saved (an outage; the driver retries the unit of
work), the unsaved ones are written at the start of the next ``dispatch`` / ``poll`` and none of
those queries is sent again — the oracle is paid once. Only a driver that stops before they are
written (killed, or past its outage window) resubmits them on resume, with the same key.

After a crash, :meth:`Dispatcher.restore` rebuilds handles from stored job ids and handle
events. A ``dispatched`` query with no known handle (killed between 2 and 3) and a query the
oracle reports ``unknown`` (a lost job, or a submit that failed) are resubmitted with the SAME
key, so an idempotent oracle (the lab API contract) returns the same job and never evaluates
twice.

Every retry is bounded (``optimizer.campaign.query_limits``): each resubmission is counted in
the query row before it is sent, with exponential backoff and jitter between resubmissions of
one key; past ``max_submit_attempts`` submissions, or ``max_job_age_s`` after the first dispatch
without a final answer, the query is marked ``failed`` with the reason. Every resubmission and
every give-up is a ``logging.WARNING`` naming the campaign and the key.

    >>> d = Dispatcher(storage, "c1", oracle, objectives=("y",), limit=8)   # doctest: +SKIP
    >>> d.restore(); d.dispatch(); d.poll()                                 # doctest: +SKIP
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oracles.protocol import JobHandle, Oracle, QueryRequest, QueryResult
from optimizer.campaign.crashpoints import crash_point
from optimizer.campaign.query_limits import QueryLimits
from storage import QueryRecord, Storage
from storage.errors import JobIdConflict

log = logging.getLogger(__name__)

HANDLE_EVENT = "query.handle"
_ACTIVE = ("dispatched", "running")
#: at most one "still waiting on the oracle" warning per key in this many seconds
_WAIT_WARNING_EVERY_S = 60.0


def _design(q: QueryRecord) -> Any:
    """The design of a query read with ``with_design=True`` (so it is set)."""
    assert q.design is not None, f"query {q.key} was read without its design"
    return q.design


@dataclass(frozen=True)
class PollOutcome:
    """What one poll changed: keys per new status, and keys resubmitted."""

    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    resubmitted: tuple[str, ...] = ()

    @property
    def finished(self) -> int:
        return len(self.succeeded) + len(self.failed) + len(self.cancelled)


class Dispatcher:
    """Sends a campaign's outbox to its oracle and records what comes back.

    Args:
        storage: the campaign's store.
        campaign: campaign name.
        oracle: an oracle (wrap it in ``oracles.safe.SafeOracle`` so it never raises).
        objectives: the objective names the campaign records.
        limit: at most this many queries at the oracle at once (dispatched + running).
        on_change: called with a short message after each state change (progress output).
        limits: per-query retry limits (default :class:`QueryLimits`: 10 submissions of a key,
            no job age limit; a campaign driver passes ``QueryLimits.from_config(config)``).
        clock / seed: the monotonic clock and the jitter seed of the resubmission backoff.
    """

    def __init__(self, storage: Storage, campaign: str, oracle: Oracle, *, objectives: Sequence[str],
                 limit: int, on_change: Callable[[str], None] | None = None,
                 limits: QueryLimits | None = None, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None) -> None:
        self.storage = storage
        self.campaign = campaign
        self.oracle = oracle
        self.objectives = tuple(objectives)
        self.limit = limit
        self.limits = limits or QueryLimits()
        self._handles: dict[str, JobHandle] = {}
        self._say = on_change or (lambda _msg: None)
        self._clock = clock
        self._rng = random.Random(seed)
        self._due: dict[str, float] = {}  # key -> clock time its resubmission is due
        self._last_error: dict[str, str] = {}  # key -> why its last submission or poll failed
        self._warned_at: dict[str, float] = {}  # key -> when "still waiting" was last logged
        self._gave_up: list[str] = []  # failed by a limit since the last poll's outcome
        self._unsaved: list[JobHandle] = []  # handles known here, not yet written to storage

    # ---- after a crash ------------------------------------------------------------------------
    def restore(self) -> int:
        """Rebuild handles of in-flight queries from stored job ids and handle events.

        Returns the number of in-flight queries found (``dispatched`` or ``running``).
        """
        saved: dict[str, dict[str, Any]] = {}
        for ev in self.storage.list_events(self.campaign, kind=HANDLE_EVENT):
            saved[ev.payload["key"]] = ev.payload  # the latest handle of a key wins
        active = self.storage.list_queries(self.campaign, statuses=_ACTIVE)
        for q in active:
            payload = saved.get(q.key)
            job_id = payload.get("job_id") if payload else None
            job_id = job_id or q.job_id
            if job_id is None:
                continue  # killed between "dispatched" and the handle: resubmitted by dispatch()
            self._handles[q.key] = JobHandle(q.key, job_id,
                                             dict(payload.get("metadata", {})) if payload else {})
            if q.job_id is None:
                self._record_job_id(q.key, job_id)
        return len(active)

    # ---- sending ------------------------------------------------------------------------------
    def dispatch(self) -> int:
        """Submit outbox queries while fewer than ``limit`` are at the oracle; returns how many.

        Also resubmits (same key) ``dispatched`` queries whose handle is unknown.
        """
        self._save_pending_handles()
        # Rows are listed without designs (a design is decoded only for a query sent now), and
        # the in-flight count comes from a GROUP BY: the cost stays flat however long the campaign.
        now = self._clock()
        orphans = [self.storage.get_query(q.key, with_design=True)
                   for q in self.storage.list_queries(self.campaign, statuses=("dispatched",))
                   if q.key not in self._handles and self._due.get(q.key, now) <= now
                   and self._count_resubmission(q.key, "no handle was stored for it (the "
                                                "driver stopped between dispatch and submit)")]
        counts = self.storage.query_counts(self.campaign)
        room = max(0, self.limit - sum(counts[s] for s in _ACTIVE))
        fresh: list[QueryRecord] = []
        if room and counts["pending"]:
            for q in self.storage.list_queries(self.campaign, statuses=("pending",)):
                if len(fresh) >= room:
                    break
                if self.storage.transition_query(q.key, expected="pending", new="dispatched"):
                    fresh.append(self.storage.get_query(q.key, with_design=True))
        batch = orphans + fresh
        if not batch:
            return 0
        requests = [QueryRequest(q.key, _design(q), {"campaign": self.campaign, "round": q.round_index,
                                                   "candidate": q.candidate_index})
                    for q in batch]
        handles = self.oracle.submit(requests)
        crash_point("submitted")
        self._keep_handles(handles)
        crash_point("dispatched")
        if fresh:
            self._say(f"dispatched {len(fresh)} quer{'y' if len(fresh) == 1 else 'ies'}")
        if orphans:
            self._say(f"resubmitted {len(orphans)} unconfirmed quer{'y' if len(orphans) == 1 else 'ies'} "
                      "with their original keys")
        return len(batch)

    def _keep_handles(self, handles: Sequence[JobHandle]) -> None:
        """Hold every new handle in memory first (so no query is sent again if a write below
        fails), then write them to storage in order."""
        for h in handles:
            self._handles[h.key] = h
        # a submit failure has no id: the next poll says unknown (resubmit) or failed
        self._unsaved += [h for h in handles if h.job_id is not None]
        self._save_pending_handles()

    def _save_pending_handles(self) -> None:
        """Write the handles not yet in storage (one left by a failed write is retried here)."""
        while self._unsaved:
            h = self._unsaved[0]
            if self._handles.get(h.key) is h:  # else the query finished or was resubmitted since
                self._save_handle(h)
            self._unsaved.pop(0)

    def _save_handle(self, h: JobHandle) -> None:
        assert h.job_id is not None
        if set(h.metadata) - {"job_id"}:
            # metadata beyond the id is part of the handle: saved before anything else
            self._log_handle(h)
        self._record_job_id(h.key, h.job_id, h)

    def _log_handle(self, h: JobHandle) -> None:
        self.storage.log_event(self.campaign, HANDLE_EVENT,
                               {"key": h.key, "job_id": h.job_id, "metadata": h.metadata})

    def _record_job_id(self, key: str, job_id: str, h: JobHandle | None = None) -> None:
        try:
            self.storage.record_job_id(key, job_id)
        except JobIdConflict:
            # The oracle lost the first job and gave a new id for the same key; storage keeps the
            # first id, so the new one lives in a handle event (restore() prefers the latest).
            log.warning("query %s: oracle gave job id %s after a resubmission; kept in the event log",
                        key, job_id)
            if h is not None and not set(h.metadata) - {"job_id"}:
                self._log_handle(h)

    # ---- receiving ----------------------------------------------------------------------------
    def poll(self) -> PollOutcome:
        """Poll every in-flight query with a handle and store each new state exactly once."""
        self._save_pending_handles()
        active = {q.key: q for q in self.storage.list_queries(self.campaign, statuses=_ACTIVE)}
        keys = [k for k in active if k in self._handles]
        if not keys and not self._gave_up and not (active and self.limits.max_job_age_s):
            return PollOutcome()
        results = self.oracle.poll([self._handles[k] for k in keys]) if keys else []
        crash_point("polling")
        out: dict[str, list[str]] = {s: [] for s in ("succeeded", "failed", "cancelled", "running",
                                                      "resubmitted")}
        unknown: list[str] = []
        for key, r in zip(keys, results):
            status = self._store(active[key], r)
            if status == "unknown":
                unknown.append(key)
                self._last_error[key] = r.error or "the oracle does not know this job"
            elif status:
                out[status].append(key)
            if status in ("succeeded", "failed", "cancelled"):
                self._forget(key)
            elif r.status in ("pending", "running") and r.error:
                self._warn_waiting(key, r.error)
        finished = {k for s in ("succeeded", "failed", "cancelled") for k in out[s]}
        self._give_up_old(active, finished)
        due = self._due_now([k for k in unknown if k not in self._gave_up], active)
        if due:
            out["resubmitted"] = self._resubmit(due)
        # queries this dispatcher failed (here, or in dispatch()): the budget guard sees them
        out["failed"] += [k for k in self._gave_up if k not in finished]
        self._gave_up.clear()
        outcome = PollOutcome(**{k: tuple(v) for k, v in out.items()})
        if outcome.finished:
            parts = [f"{len(v)} {k}" for k, v in (("succeeded", outcome.succeeded),
                     ("failed", outcome.failed), ("cancelled", outcome.cancelled)) if v]
            self._say(f"{outcome.finished} quer{'y' if outcome.finished == 1 else 'ies'} finished: "
                      + ", ".join(parts))
        return outcome

    def _store(self, q: QueryRecord, r: QueryResult) -> str | None:
        if r.status == "unknown":
            return "unknown"
        if r.status == "running":
            if q.status == "dispatched":
                self.storage.transition_query(q.key, expected="dispatched", new="running")
                return "running"
            return None
        if r.status == "succeeded":
            values = r.values or {}
            missing = [o for o in self.objectives if o not in values]
            if missing:
                won = self.storage.transition_query(
                    q.key, expected=q.status, new="failed",
                    error=f"oracle result lacks objective(s) {missing}; it returned {sorted(values)}")
                return "failed" if won else None
            noise = {o: r.noise[o] for o in self.objectives if r.noise and o in r.noise} or None
            won = self.storage.transition_query(
                q.key, expected=q.status, new="succeeded",
                values={o: values[o] for o in self.objectives}, noise=noise)
            return "succeeded" if won else None
        if r.status == "failed":
            reason = r.error or "the oracle reported a failure without a reason"
            won = self.storage.transition_query(q.key, expected=q.status, new="failed", error=reason)
            if won:  # a lab's failure or a reply we cannot use: visible without opening the database
                log.warning("campaign %s: query %s: failed: %.500s", self.campaign, q.key, reason)
            return "failed" if won else None
        if r.status == "cancelled":
            won = self.storage.transition_query(q.key, expected=q.status, new="cancelled", error=r.error)
            return "cancelled" if won else None
        return None  # pending at the oracle: nothing to write

    def _resubmit(self, keys: list[str]) -> list[str]:
        """Resubmit ``keys`` (same keys) within their attempt limit; returns those resubmitted
        (the others were failed, or finished meanwhile)."""
        requests = []
        for key in keys:
            if not self._count_resubmission(key, self._last_error.get(key, "")):
                continue
            q = self.storage.get_query(key, with_design=True)
            requests.append(QueryRequest(key, _design(q), {
                "campaign": self.campaign, "round": q.round_index,
                "candidate": q.candidate_index, "resubmitted": True}))
        if requests:
            self._keep_handles(self.oracle.submit(requests))
        return [r.key for r in requests]

    # ---- limits -------------------------------------------------------------------------------
    def _count_resubmission(self, key: str, why: str) -> bool:
        """Count one more submission of ``key`` in storage (before it is sent); past
        ``max_submit_attempts`` the query fails instead. True: send it now."""
        limit = self.limits.max_submit_attempts
        n = self.storage.count_submit_attempt(key, max_attempts=limit)
        if n is not None:
            log.warning("campaign %s: query %s: resubmitting with the same key (submission %d of "
                        "at most %d): %s", self.campaign, key, n, limit, why or "no reason given")
            return True
        q = self.storage.get_query(key, with_design=False)
        if q.status not in _ACTIVE:
            return False  # finished meanwhile (another writer): nothing to send or fail
        reason = (f"gave up after {q.attempts} submission(s) of this key "
                  f"(budget.max_submit_attempts = {limit}); last error: {why or 'none reported'}")
        self._fail(q, reason)
        return False

    def _due_now(self, keys: list[str], active: dict[str, QueryRecord]) -> list[str]:
        """The keys whose resubmission is due now; the others get (or keep) a backoff time."""
        now = self._clock()
        due = []
        for key in keys:
            if key not in self._due:
                delay = self.limits.delay_before(active[key].attempts + 1, self._rng)
                self._due[key] = now + delay
                if delay > 0:
                    log.warning("campaign %s: query %s: submission %d failed (%s); resubmitting "
                                "in %.1f s", self.campaign, key, active[key].attempts,
                                self._last_error.get(key, "no reason given"), delay)
            if self._due[key] <= now:
                del self._due[key]
                due.append(key)
        return due

    def _give_up_old(self, active: dict[str, QueryRecord], finished: set[str]) -> None:
        """Fail the queries at the oracle longer than ``max_job_age_s`` without a final answer
        (their jobs are cancelled at the oracle, best effort)."""
        age = self.limits.max_job_age_s
        if age is None or not active:
            return
        for key in self.storage.overdue_queries(self.campaign, age_s=age):
            q = active.get(key)
            if q is None or key in finished:
                continue
            last = self._last_error.get(key)
            reason = (f"no final answer from the oracle {age:g} s after dispatch "
                      f"(budget.max_job_age_s = {age:g}); last error: {last or 'none reported'}")
            handle = self._handles.get(key)
            if handle is not None and handle.job_id:
                try:
                    self.oracle.cancel([handle])
                except Exception as exc:  # noqa: BLE001 - the query fails regardless
                    log.warning("campaign %s: query %s: the oracle could not cancel job %s (%s)",
                                self.campaign, key, handle.job_id, exc)
            self._fail(q, reason)

    def _fail(self, q: QueryRecord, reason: str) -> bool:
        """Mark ``q`` failed with ``reason`` (conditional: False if it moved on meanwhile)."""
        won = self.storage.transition_query(q.key, expected=q.status, new="failed", error=reason)
        if won:
            log.warning("campaign %s: query %s: giving up: %s", self.campaign, q.key, reason)
            self._forget(q.key)
            self._gave_up.append(q.key)
        return won

    def _forget(self, key: str) -> None:
        for table in (self._due, self._last_error, self._warned_at):
            table.pop(key, None)

    def _warn_waiting(self, key: str, error: str) -> None:
        """A poll that got no answer (5xx, 429, a timeout, invalid JSON): the job stays at the
        oracle; say so at most once a minute per key."""
        self._last_error[key] = error
        now = self._clock()
        if now - self._warned_at.get(key, -_WAIT_WARNING_EVERY_S) < _WAIT_WARNING_EVERY_S:
            return
        self._warned_at[key] = now
        age = self.limits.max_job_age_s
        until = (f"until budget.max_job_age_s = {age:g} s after dispatch" if age is not None
                 else "(no job age limit)")
        log.warning("campaign %s: query %s: no answer from the oracle (%s); polling again %s",
                    self.campaign, key, error, until)

    def cancel_in_flight(self) -> list[str]:
        """Ask the oracle to stop every query it holds (by stored handle; best effort — a lab
        that cannot cancel just keeps its job) and mark those queries ``cancelled``."""
        active = self.storage.list_queries(self.campaign, statuses=("dispatched", "running"))
        handles = [self._handles[q.key] for q in active if q.key in self._handles]
        if handles:
            try:
                self.oracle.cancel(handles)
            except Exception as exc:  # noqa: BLE001 - the rows are cancelled regardless
                log.warning("campaign %s: the oracle could not cancel %d job(s) (%s); their "
                            "results will not be read", self.campaign, len(handles), exc)
        done = []
        for q in active:
            if self.storage.transition_query(q.key, expected=q.status, new="cancelled",
                                             error="campaign cancelled while at the oracle"):
                done.append(q.key)
        return done

    def close(self) -> None:
        """Close the oracle's connections."""
        self.oracle.close()
