"""The asynchronous round pipeline: a screened batch is ready whenever the oracle has room.

The synchronous driver generates a round on its own thread when ``in_flight + q`` fits under the
limit, so the oracle idles for the whole fit + SMC + screening. Here (``[pipeline] mode =
"async"``) the driver's thread only polls, records and sends (every database write stays on it,
so the exactly-once rules of the synchronous loop hold unchanged), and two background threads
compute:

* **generation** (``RoundGenerator.generate``): fit the surrogate on a history snapshot and run
  the SMC chunks on the Ray pool; the pooled particles become the candidate *pool*. A new
  population is started after ``regenerate_every`` new results (the target has moved), or when
  fewer than ``min_pool`` unused candidates are left.
* **selection** (``RoundGenerator.select``): pick the next ``q`` from the pool's unused
  candidates against the current pending points (refitting the surrogate when results arrived
  since the pool's fit), i.e. the batch that goes out the moment slots free up.

A selected batch is valid for the state it was computed in: another batch sent since (new
pending points) makes it stale and it is recomputed; results that arrived since make it *stale
by results* only, and ``rescore`` decides whether the next batch waits for a refit
(``optimizer.campaign.config_pipeline.PipelineConfig``). Each batch is recorded as its own
round (its candidates are the pool's unused ones; ``summary.population`` names the round the
population was generated for). Nothing computed in the background is ever sent before the
driver's thread records it, so a crash loses at most a pool that nothing paid for.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optimizer.campaign.auto_alpha import AutoAlphaInputs
from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.rounds import Population, RoundGenerator, RoundPlan
from storage import History, HistoryColumns, QueryRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundInputs:
    """What a round is computed from, read by the driver's thread (see ``CampaignDriver``)."""

    index: int
    tilted_before: int
    previous_state: bytes | None
    history: History | HistoryColumns
    imported: Sequence[QueryRecord]
    #: what ``alpha = "auto"`` chooses α from (None unless α is auto)
    auto: AutoAlphaInputs | None = None


@dataclass
class _Ready:
    """Batches selected together (each next one with the earlier ones as pending points), in
    the order they go out, and the state they were selected in."""

    plans: list[RoundPlan]
    population: int  # which population (``AsyncRounds.population_number``) they came from
    sent: int  # batches sent when they were selected
    finished: int  # finished queries when they were selected
    seconds: float  # how long the selection took (fit included)
    refit: bool = False  # whether it refitted the surrogate on new results
    taken: int = 0  # batches of the list sent so far

    @property
    def next(self) -> RoundPlan | None:
        return self.plans[self.taken] if self.taken < len(self.plans) else None


def split_plan(plan: RoundPlan, q: int) -> list[RoundPlan]:
    """Cut a plan whose ``selected`` holds several batches (greedy order) into plans of ``q``:
    plan j is round ``plan.index + j``, its candidates are those not sent by plans before it."""
    out: list[RoundPlan] = []
    taken: set[int] = set()
    rows = plan.population_rows
    for j in range(0, len(plan.selected), q):
        part = plan.selected[j:j + q]
        keep = [i for i in range(len(plan.candidates)) if i not in taken]
        where = {i: n for n, i in enumerate(keep)}
        summary = dict(plan.summary)
        if "population" in summary:
            summary["population"] = {**summary["population"], "available": len(keep)}
        timings = dict(plan.timings) if j == 0 else {k: 0.0 for k in plan.timings}
        out.append(replace(plan, index=plan.index + j // q, candidates=[plan.candidates[i] for i in keep],
                           selected=[where[i] for i in part], summary=summary, timings=timings,
                           population_rows=None if rows is None else rows[j:j + q]))
        taken.update(part)
    return out


class AsyncRounds:
    """The pipeline of one driver (see the module docstring).

    Args:
        config: the campaign config (``[pipeline]``, ``[budget]``).
        generator: returns the ``RoundGenerator`` (built lazily by the driver).
        read_inputs: reads a ``RoundInputs`` snapshot (called on the driver's thread, inside the
            driver's database-outage retry).
        record: records a plan as the next round and its outbox (driver's thread).
        say: the driver's progress output.
    """

    def __init__(self, config: CampaignConfig, generator: Callable[[], RoundGenerator],
                 read_inputs: Callable[[], RoundInputs], record: Callable[[RoundPlan], None],
                 say: Callable[[str], None]) -> None:
        self.config = config
        self.settings = config.pipeline
        self._generator = generator
        self._read_inputs = read_inputs
        self._record = record
        self.say = say
        q = config.budget.q
        self.regenerate_every = self.settings.regenerate_every or q
        self.min_pool = self.settings.min_pool or 2 * q
        name = config.name[:24]
        self._gen_pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"tiltloop-generate-{name}")
        self._sel_pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"tiltloop-select-{name}")
        self._gen_job: cf.Future[Population] | None = None
        self._gen_at = 0  # finished queries when the running generation read its history
        self._sel_job: cf.Future[_Ready] | None = None
        self.pool: Population | None = None
        self.used: np.ndarray = np.zeros(0, dtype=bool)
        self.pool_finished = 0  # finished queries when the current pool's history was read
        self.population_number = 0
        self.ready: _Ready | None = None
        self.sent = 0
        self.latencies: deque[float] = deque(maxlen=64)
        self.select_seconds: float | None = None  # the last selection's duration
        self.refit_seconds: float | None = None  # the last selection's that refitted
        self._room_since: float | None = None
        #: seconds the oracle had room for a batch that was not ready yet, one entry per batch
        self.waits: list[float] = []

    # ---- called by the driver, on its thread --------------------------------------------------
    def step(self, *, in_flight: int, finished: int, remaining: int) -> bool:
        """One pass: collect finished background work, send a batch if there is room and one is
        ready, start background work that is due. Returns True when a round was recorded.
        A background failure is raised here (the same error the synchronous loop would raise)."""
        self._harvest()
        cfg = self.config.budget
        q = min(cfg.q, remaining)
        recorded = False
        if q > 0 and in_flight + q <= cfg.in_flight_limit:
            if self._room_since is None:
                self._room_since = time.monotonic()
            ready = self._usable(q, finished)
            if ready is not None:
                self._send(ready)
                recorded = True
        self._start_jobs(q, finished, remaining)
        return recorded

    def observe(self, records: Sequence[QueryRecord]) -> None:
        """Finished queries: their oracle latency (dispatch to result) for ``rescore = "auto"``."""
        for r in records:
            if r.dispatched_at is not None and r.finished_at is not None:
                self.latencies.append((r.finished_at - r.dispatched_at).total_seconds())

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when background work finishes."""
        jobs: list[cf.Future[Any]] = [j for j in (self._gen_job, self._sel_job)
                                      if j is not None and not j.done()]
        if jobs:
            cf.wait(jobs, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        else:
            time.sleep(timeout)

    @property
    def busy(self) -> bool:
        """Whether background work is running (the driver then waits on it, not a fixed sleep)."""
        return any(j is not None and not j.done() for j in (self._gen_job, self._sel_job))

    def close(self) -> None:
        """Stop: nothing new starts; running work is waited for at most ``stop_wait_s`` (a
        generation in progress holds Ray workers), then left with a warning. Nothing it made
        is sent: only the driver's thread sends."""
        jobs: list[cf.Future[Any]] = [j for j in (self._gen_job, self._sel_job) if j is not None]
        for j in jobs:
            j.cancel()
        running = [j for j in jobs if not j.done()]
        if running:
            done, left = cf.wait(running, timeout=self.settings.stop_wait_s)
            if left:
                log.warning("campaign %s: a background round generation still runs after %.0f s "
                            "([pipeline] stop_wait_s); the driver stops without it (nothing it "
                            "made was sent)", self.config.name, self.settings.stop_wait_s)
        self._gen_pool.shutdown(wait=False, cancel_futures=True)
        self._sel_pool.shutdown(wait=False, cancel_futures=True)

    # ---- internals ------------------------------------------------------------------------------
    def _harvest(self) -> None:
        if self._gen_job is not None and self._gen_job.done():
            job, self._gen_job = self._gen_job, None
            pop = job.result()  # re-raises a generation error on the driver's thread
            self.pool, self.used = pop, np.zeros(len(pop.designs), dtype=bool)
            self.pool_finished = self._gen_at
            self.population_number += 1
            self.say(f"pipeline: population {self.population_number} ready ({len(pop.designs)} "
                     f"candidates for round {pop.index}, {'tilted' if pop.tilted else 'plain prior'}; "
                     f"fit {pop.timings['fit_s']:.1f} s, SMC {pop.timings['smc_s']:.1f} s)")
        if self._sel_job is not None and self._sel_job.done():
            selected, self._sel_job = self._sel_job, None
            new = selected.result()
            self.select_seconds = new.seconds
            if new.refit:
                self.refit_seconds = new.seconds
            # a batch went out while it ran: its pending points are out of date; the list it
            # was to replace stays (still valid) and the next pass starts a new selection
            if new.sent == self.sent or not self._valid(self.ready):
                self.ready = new

    def _valid(self, ready: _Ready | None) -> bool:
        """Whether ``ready`` has a next batch selected with every batch sent since as pending."""
        return ready is not None and ready.next is not None and ready.sent + ready.taken == self.sent

    def _usable(self, q: int, finished: int) -> _Ready | None:
        """The ready list if its next batch may go out now (see the module docstring)."""
        ready = self.ready
        if ready is None or not self._valid(ready) or len(ready.next.selected) != q:  # type: ignore[union-attr]
            return None
        if ready.finished == finished or self.settings.rescore == "never":
            return ready
        if self.settings.rescore == "always":
            return None
        # auto: wait for a refit only when one is known to be cheap next to the oracle's latency
        if not self.latencies or self.refit_seconds is None:
            return ready
        latency = statistics.median(self.latencies)
        return None if self.refit_seconds <= self.settings.rescore_fraction * latency else ready

    def _send(self, ready: _Ready) -> None:
        plan = ready.next
        assert plan is not None  # _usable checked it
        wait = time.monotonic() - self._room_since if self._room_since is not None else 0.0
        plan.timings["oracle_wait_s"] = wait
        self._record(plan)
        self.waits.append(wait)
        self._room_since = None
        if plan.population_rows is not None and ready.population == self.population_number:
            self.used[plan.population_rows] = True
        self.sent += 1
        ready.taken += 1

    def _eligible(self) -> int:
        return 0 if self.pool is None else int((~self.used).sum())

    def _start_jobs(self, q: int, finished: int, remaining: int) -> None:
        if q <= 0:
            return
        new_results = finished - self.pool_finished
        if self._gen_job is None and (self.pool is None or self._eligible() < self.min_pool
                                      or new_results >= self.regenerate_every):
            inputs = self._read_inputs()
            self._gen_at = finished
            tag = f"population-{self.population_number + 1}"
            # built here, on the driver's thread (Ray start and signal handlers belong there)
            self._gen_job = self._gen_pool.submit(self._generate, self._generator(), inputs, tag)
        if self._sel_job is None and self.pool is not None and self._eligible() >= q:
            ready = self.ready
            fresh = (ready is not None and self._valid(ready) and ready.finished == finished
                     and ready.population == self.population_number
                     and len(ready.next.selected) == q)  # type: ignore[union-attr]
            if not fresh:
                inputs = self._read_inputs()
                batches = self._batches_ahead(q)
                self._sel_job = self._sel_pool.submit(
                    self._select, self._generator(), self.pool, self.population_number, ~self.used,
                    inputs, q, min(q * batches, remaining), self.sent, finished)

    def _batches_ahead(self, q: int) -> int:
        """How many batches one selection holds: enough to refill every slot of the in-flight
        limit twice (the batches sent together come back together), or, once the oracle's pace is
        known, once plus as many as it finishes while the next selection runs (that selection's
        last duration over the oracle's time per batch); at most four times the limit."""
        limit = self.config.budget.in_flight_limit
        fill = -(-limit // q)
        if not self.latencies or self.select_seconds is None:
            return 2 * fill
        per_batch = statistics.median(self.latencies) * q / limit
        behind = math.ceil(self.select_seconds / per_batch) if per_batch > 0 else fill
        return min(4 * fill, fill + max(fill, behind))

    @staticmethod
    def _generate(generator: RoundGenerator, inputs: RoundInputs, tag: str) -> Population:
        return generator.generate(
            inputs.index, inputs.history, tilted_rounds_before=inputs.tilted_before,
            previous_state=inputs.previous_state, imported=inputs.imported, seed_tag=tag,
            auto=inputs.auto)

    @staticmethod
    def _select(generator: RoundGenerator, pop: Population, number: int, available: np.ndarray,
                inputs: RoundInputs, q: int, total: int, sent: int, finished: int) -> _Ready:
        t0 = time.perf_counter()
        plan = generator.select(pop, inputs.index, inputs.history, total,
                                imported=inputs.imported, available=available,
                                previous_state=inputs.previous_state, refit="auto")
        refit = bool(plan.summary.get("population", {}).get("refit"))
        return _Ready(plans=split_plan(plan, q), population=number, sent=sent, finished=finished,
                      seconds=time.perf_counter() - t0, refit=refit)
