"""The asynchronous round pipeline: a screened batch is ready whenever the oracle has room.

The synchronous driver generates a round on its own thread when ``in_flight + q`` fits under the
limit, so the oracle idles for the whole fit + SMC + screening. Here (``[pipeline] mode =
"async"``) the driver's thread only polls, records and sends (every database write stays on it,
so the exactly-once rules of the synchronous loop hold unchanged), and two background threads
compute:

* **generation** (``RoundGenerator.generate``): tilt with the surrogate on a history snapshot
  and run the SMC chunks on the Ray pool; the pooled particles become the candidate *pool*. The
  surrogate is the newest full fit conditioned on the results since (a refit every
  ``refit_every`` results, as below): the SMC starts a fit's seconds sooner, so the pool lags the
  results less. A new population is started after ``regenerate_every`` new results (the target
  has moved), or when fewer than ``min_pool`` unused candidates are left.
* **selection** (``RoundGenerator.select``): pick the next batches from the pool's unused
  candidates against the current pending points, screened with the newest full fit conditioned
  on the results since (hyperparameters held; re-optimized after ``refit_every`` results,
  ``optimizer.campaign.rescoring``).

The ready batches form a list, each batch selected with all earlier ones pending. Fill first,
then rescore: when slots free up, the list's next batch goes out at once; when results arrived
since the list was screened, a selection starts in the background for the batches *after* the
ones of the list expected to go out while it runs (the sends due, at the oracle's pace, before
its longest recent duration ends: none when it ends before the next send; their designs added as
pending points) and, when it ends, replaces the rest of the list. A selection holds few batches:
those the oracle takes while the next selection runs, plus one spare. Every batch of a list is
screened with the results known when the list was made, so a long list sends stale batches (the
bench measured it: lists of 3–4 batches ahead of a prefix of 2–3 sent batches screened 20–40
results behind, and designs clearly worse than the sync loop's); this way a batch misses the
results of the bursts that freed its slots (8–16 on the bench's lab, where the two batches in
flight return together), still more than the sync loop, which idles for them. If more batches
went out meanwhile than it assumed, its pending points are out of date and it is dropped (the
list it was to extend stays valid). ``rescore`` decides whether a batch screened before the
latest results may still go out or waits for a fresh one
(``optimizer.campaign.config_pipeline.PipelineConfig``).

Before any result the plain-prior pool fills the slots once (``fill`` batches, as the sync
loop); at the first results the free slots get prior samples screened with a surrogate fitted
on those results (a batch selected before them is not sent), and the tilted population starts
once that fit exists and conditions it. Each batch is recorded as its own round
(its candidates are the pool's unused ones; ``summary.population`` names the round the
population was generated for and how the surrogate was made, ``timings`` how long the oracle
waited for the batch and on what). Nothing computed in the background is ever sent before the
driver's thread records it, so a crash loses at most a pool that nothing paid for.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optimizer.campaign.auto_alpha import AutoAlphaInputs
from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.rescoring import FullFit, Rescored, rescoring_fit
from optimizer.campaign.rounds import MIN_OBSERVATIONS, Population, RoundGenerator, RoundPlan, training_data
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
class _Batch:
    """One selected batch waiting to go out: its plan, the population it came from and the state
    its selection started in."""

    plan: RoundPlan
    population: int  # which population (``AsyncRounds.population_number``) it came from
    finished: int  # finished queries when its selection read the history
    started: float  # when its selection started (``time.monotonic``)


@dataclass
class _Ready:
    """Batches in the order they go out, each selected with all the earlier ones pending."""

    batches: list[_Batch]
    sent: int  # batches the pipeline had sent when this list was formed
    taken: int = 0  # batches of the list sent so far

    @property
    def next(self) -> _Batch | None:
        return self.batches[self.taken] if self.taken < len(self.batches) else None

    @property
    def unsent(self) -> list[_Batch]:
        return self.batches[self.taken:]


@dataclass
class _Selection:
    """What a background selection returns: new batches meant to follow ``prefix`` (batches of
    the ready list assumed to go out while it ran; their designs were its extra pending points)."""

    batches: list[_Batch]
    prefix: list[_Batch]
    sent: int  # batches sent when it started
    seconds: float  # how long it took (re-scoring surrogate included)
    rescored: Rescored | None = None
    fresh_batches: int = 1  # batches a re-screening the oracle waits for would hold when it started


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
        # populations bring a full fit every ``regenerate_every`` results; a selection refits
        # only when they lag far behind (a refit is seconds on a loaded machine, and a slow
        # selection goes out staler)
        self.refit_every = self.settings.refit_every or 4 * self.regenerate_every
        name = config.name[:24]
        self._gen_pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"tiltloop-generate-{name}")
        self._sel_pool = cf.ThreadPoolExecutor(1, thread_name_prefix=f"tiltloop-select-{name}")
        self._gen_job: cf.Future[tuple[Population, Rescored | None]] | None = None
        #: whether the campaign tilts at all (a surrogate exists; set when a generation starts)
        self._tilting = False
        #: batches of prior samples screened with results that went out (at most ``fill`` are
        #: selected while the tilted population is on its way; ``_awaiting_tilt``)
        self.screened_plain = 0
        self._gen_at = 0  # finished queries when the running generation read its history
        self._gen_tilts = False  # whether the running generation has results to tilt with
        self._sel_job: cf.Future[_Selection] | None = None
        self.pool: Population | None = None
        self.used: np.ndarray = np.zeros(0, dtype=bool)
        self.pool_finished = 0  # finished queries when the current pool's history was read
        self.population_number = 0
        #: the newest fit with optimized hyperparameters (a population's or a re-scoring's)
        self.full_fit: FullFit | None = None
        self.ready: _Ready | None = None
        self.sent = 0
        self.latencies: deque[float] = deque(maxlen=64)
        #: the last selections' durations (re-scoring surrogate and screening), and those of the
        #: ones that screened with a surrogate (what waiting for a re-screening costs)
        self.select_seconds: deque[float] = deque(maxlen=3)
        self.rescore_seconds: deque[float] = deque(maxlen=3)
        #: selections by how their surrogate was made ("reuse", "condition", "refit"), and those
        #: dropped because more batches went out while they ran than they had assumed
        self.rescores: Counter[str] = Counter()
        self.discarded = 0
        self._room_since: float | None = None
        self._last_send: float | None = None  # when the last batch went out (monotonic)
        self._last_pass: float | None = None
        self._waited: dict[str, float] = {}
        #: seconds the oracle had room for a batch that was not ready yet, one entry per batch
        self.waits: list[float] = []

    # ---- called by the driver, on its thread --------------------------------------------------
    def step(self, *, in_flight: int, finished: int, remaining: int) -> bool:
        """One pass: collect finished background work, send a batch if there is room and one is
        ready, start background work that is due. Returns True when a round was recorded.
        A background failure is raised here (the same error the synchronous loop would raise)."""
        now = time.monotonic()
        if self._room_since is not None and self._last_pass is not None:
            cause = self._cause(finished)
            self._waited[cause] = self._waited.get(cause, 0.0) + now - self._last_pass
        self._last_pass = now
        self._harvest()
        cfg = self.config.budget
        q = min(cfg.q, remaining)
        if q > 0 and in_flight + q <= cfg.in_flight_limit:
            if self._room_since is None:
                self._room_since = now
            ready = self._usable(q, finished)
            if ready is not None:
                self._send(ready)
                # the driver dispatches it now; background work (its history reads) starts on
                # the next pass, which follows at once
                return True
        self._start_jobs(q, finished, remaining, in_flight)
        return False

    def observe(self, records: Sequence[QueryRecord]) -> None:
        """Finished queries: their oracle latency (dispatch to result), the pace of the sends."""
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
            pop, tilt = job.result()  # re-raises a generation error on the driver's thread
            self.pool, self.used = pop, np.zeros(len(pop.designs), dtype=bool)
            self.pool_finished = self._gen_at
            self.population_number += 1
            if tilt is not None:  # tilted with the newest full fit conditioned, or a refit
                self.rescores[f"population_{tilt.kind}"] += 1
                self._newer_fit(tilt.full)
            elif pop.fit is not None:
                self._newer_fit(FullFit(fit=pop.fit, observations=pop.observations))
            self.say(f"pipeline: population {self.population_number} ready ({len(pop.designs)} "
                     f"candidates for round {pop.index}, {'tilted' if pop.tilted else 'plain prior'}; "
                     f"fit {pop.timings['fit_s']:.1f} s, SMC {pop.timings['smc_s']:.1f} s)")
        if self._sel_job is not None and self._sel_job.done():
            job_s, self._sel_job = self._sel_job, None
            new = job_s.result()
            self.select_seconds.append(new.seconds)
            if new.rescored is not None:
                # what a fresh re-screening (``_fresh_batches``) would take: a longer selection's
                # time scaled down to that many batches
                n = max(1, len(new.batches))
                self.rescore_seconds.append(new.seconds * min(1.0, new.fresh_batches / n))
                self.rescores[new.rescored.kind] += 1
                self._newer_fit(new.rescored.full)
            # batches that went out while it ran must be the first of those it assumed would
            # (its prefix, still the ready list's next ones); then it follows what is left of them
            gone = self.sent - new.sent
            ready = self.ready
            left = ready.unsent if self._valid(ready) and ready is not None else []
            rest = new.prefix[gone:]
            if gone <= len(new.prefix) and len(left) >= len(rest) and all(
                    a is b for a, b in zip(rest, left, strict=False)):
                self.ready = _Ready(batches=[*rest, *new.batches], sent=self.sent)
                log.debug("campaign %s: selection (%s, %.2f s) of %d batches after %d assumed, "
                          "%d of them sent meanwhile", self.config.name,
                          new.rescored.kind if new.rescored else "no surrogate", new.seconds,
                          len(new.batches), len(new.prefix), gone)
            else:
                self.discarded += 1  # pending points out of date; the list it was to extend stays
                log.debug("campaign %s: selection (%.2f s) dropped: %d batches sent meanwhile, "
                          "%d assumed", self.config.name, new.seconds, gone, len(new.prefix))

    def _newer_fit(self, fit: FullFit) -> None:
        if self.full_fit is None or fit.observations >= self.full_fit.observations:
            self.full_fit = fit

    def _valid(self, ready: _Ready | None) -> bool:
        """Whether ``ready`` has a next batch selected with every batch sent since as pending."""
        return ready is not None and ready.next is not None and ready.sent + ready.taken == self.sent

    def _wait_for_fresh(self) -> bool:
        """Whether a batch stale by results waits for a re-screening (``rescore``)."""
        if self.settings.rescore != "auto":
            return self.settings.rescore == "always"
        if not self.latencies or not self.rescore_seconds:
            return False  # nothing known of a re-screening's cost: never wait for one
        # the median of the recent ones: one slow selection (a refit, a burst of load) does not
        # turn waiting off for the next three
        latency = statistics.median(self.latencies)
        return statistics.median(self.rescore_seconds) <= self.settings.rescore_fraction * latency

    def _fresh_batches(self, q: int, in_flight: int) -> int:
        """Batches a re-screening that the oracle waits for holds: those the free slots take
        (one selection for all of them: its fixed cost, the surrogate and the prefilter, is
        paid once per burst of results instead of once per batch), at least one."""
        return max(1, (self.config.budget.in_flight_limit - in_flight) // q)

    def _usable(self, q: int, finished: int) -> _Ready | None:
        """The ready list if its next batch may go out now (see the module docstring)."""
        ready = self.ready
        if ready is None or not self._valid(ready) or len(ready.next.plan.selected) != q:  # type: ignore[union-attr]
            return None
        batch = ready.next
        assert batch is not None  # _valid checked it
        if not batch.plan.tilted and self._tilting and batch.finished < MIN_OBSERVATIONS <= finished:
            # prior samples selected before any result (space-filling) give way to a selection
            # that screens them with the first results (the sync loop sends ``fill`` batches
            # without results, no more)
            self.ready = None
            return None
        if batch.finished == finished or not self._wait_for_fresh():
            return ready
        # waiting for a fresh batch: one whose screening started once the oracle had room is
        # as fresh as a waiting oracle gets (results arriving meanwhile would restart it forever)
        return ready if self._room_since is not None and batch.started >= self._room_since else None

    def _cause(self, finished: int) -> str:
        """What a pass that had room but sent nothing waited on (the bench's breakdown)."""
        if self._valid(self.ready):
            return "rescore"  # a batch existed; the rescore policy held it for a fresh one
        if self.pool is None or self._eligible() < self.config.budget.q or self._awaiting_tilt():
            return "population"
        return "selection"

    def _awaiting_tilt(self) -> bool:
        """Whether the pool is plain-prior samples while a tilted population is on its way: no
        batch is selected from it then unless the oracle has room now and fewer than ``fill``
        such batches went out (prior samples screened by the surrogate are worse designs than a
        tilted population's, so no list of them is made ahead, and a slow population is waited
        for; but the first tilted population takes the whole SMC, too long an idle oracle at
        every campaign's start: the slots free at the first results get prior samples screened
        with a surrogate fitted on those results)."""
        return (self.pool is not None and not self.pool.tilted and self._gen_job is not None
                and self._gen_tilts)

    def _send(self, ready: _Ready) -> None:
        batch = ready.next
        assert batch is not None  # _usable checked it
        plan = batch.plan
        wait = time.monotonic() - self._room_since if self._room_since is not None else 0.0
        plan.timings["oracle_wait_s"] = wait
        for cause in ("population", "selection", "rescore"):
            plan.timings[f"wait_{cause}_s"] = self._waited.get(cause, 0.0)
        self._record(plan)
        self.waits.append(wait)
        self._room_since = None
        self._last_send = time.monotonic()
        self._waited.clear()
        if not plan.tilted and batch.finished >= MIN_OBSERVATIONS:
            self.screened_plain += 1
        if plan.population_rows is not None and batch.population == self.population_number:
            self.used[plan.population_rows] = True
        self.sent += 1
        ready.taken += 1

    def _eligible(self) -> int:
        return 0 if self.pool is None else int((~self.used).sum())

    def _start_generation(self, finished: int) -> None:
        """Start a population when one is due (see the module docstring)."""
        new_results = finished - self.pool_finished
        # a plain-prior pool is replaced as soon as results exist to tilt with (its samples are
        # not screened into batches meanwhile, ``_awaiting_tilt``)
        untilted = (self.pool is not None and not self.pool.tilted and new_results > 0
                    and finished >= MIN_OBSERVATIONS)
        if self._gen_job is None and (self.pool is None or self._eligible() < self.min_pool
                                      or new_results >= self.regenerate_every or untilted):
            inputs = self._read_inputs()
            self._gen_at = finished
            tag = f"population-{self.population_number + 1}"
            # built here, on the driver's thread (Ray start and signal handlers belong there)
            generator = self._generator()
            self._tilting = generator.surrogate is not None
            self._gen_tilts = self._tilting and (
                _completed(inputs.history) + len(inputs.imported) >= MIN_OBSERVATIONS)
            self._gen_job = self._gen_pool.submit(self._generate, generator, inputs, tag,
                                                  self.full_fit, self.refit_every)

    def _start_jobs(self, q: int, finished: int, remaining: int, in_flight: int) -> None:
        if q <= 0:
            return
        # the first results: the free slots' batches are screened first (the first fit, of a
        # few results), the tilted population after it (it then conditions that fit instead of
        # fitting again; a generation running alongside would only slow the screening down)
        untilted = self.pool is not None and not self.pool.tilted and self.full_fit is None
        if untilted and self._sel_job is None:
            self._start_selection(q, finished, remaining, in_flight)
        if not (untilted and self._sel_job is not None):
            self._start_generation(finished)
        self._start_selection(q, finished, remaining, in_flight)

    def _start_selection(self, q: int, finished: int, remaining: int, in_flight: int) -> None:
        if self._sel_job is not None or self.pool is None or self._eligible() < q:
            return
        room = (self.config.budget.in_flight_limit - in_flight) // q
        awaiting = self._awaiting_tilt()
        fill = self._pace(q)[0]
        if awaiting and (self._room_since is None or room < 1 or self.screened_plain >= fill):
            return
        if (finished < MIN_OBSERVATIONS and in_flight > 0 and self.sent >= fill
                and not self._valid(self.ready)):
            # without results the sync loop sends ``fill`` batches, then waits for results; with
            # nothing in flight no result is coming (q = max_in_flight, or failed queries):
            # another plain-prior batch goes out, as the sync loop would send
            return
        ready = self.ready
        valid = (ready is not None and self._valid(ready) and ready.next is not None
                 and len(ready.next.plan.selected) == q)
        if valid and ready is not None:
            tail = ready.batches[-1]
            if tail.finished == finished and tail.population == self.population_number:
                return  # fresh: nothing new to screen with
        # fill first: the next batches of the ready list go out while this selection runs, so
        # it selects the batches after them (their designs pending) and never holds the oracle
        # (at most all but the budget's last batch: the end of the budget is re-screened too,
        # with the newest pool, instead of going out as screened long ago)
        keep = min(self._prefix_size(q), max(0, -(-remaining // q) - 1))
        fresh = self._wait_for_fresh()
        prefix = [] if not valid or ready is None or fresh else ready.unsent[:keep]
        # without results nothing is learned from more batches than fill the slots (the sync
        # loop sends as many plain-prior ones)
        # (batches that wait for a fresh re-screening wait only for the free slots' picks)
        batches = (fill if finished < MIN_OBSERVATIONS else room if awaiting else
                   self._fresh_batches(q, in_flight) if fresh else self._batches_ahead(q))
        total = min(q * batches, remaining - sum(len(b.plan.selected) for b in prefix))
        if total <= 0:
            return  # the prefix already spends the budget
        available = ~self.used
        for b in prefix:
            if b.population == self.population_number and b.plan.population_rows is not None:
                available[b.plan.population_rows] = False
        if int(available.sum()) < min(q, total):
            return  # the pool is spent; a population is on its way
        inputs = self._read_inputs()
        index = prefix[-1].plan.index + 1 if prefix else inputs.index
        # a re-screening the oracle waits for conditions the last full fit up to twice the
        # refit schedule (a refit is seconds of idle lab; the next population refits when due,
        # in the background)
        refit_every = 2 * self.refit_every if fresh else self.refit_every
        self._sel_job = self._sel_pool.submit(
            self._select, self._generator(), self.pool, self.population_number, available,
            inputs, index, q, total, self.sent, finished, prefix, self.full_fit, refit_every,
            self._fresh_batches(q, in_flight), self.settings.select_mc_samples)

    def _pace(self, q: int) -> tuple[int, int | None]:
        """``(fill, behind)``: batches that fill the in-flight limit, and batches the oracle
        finishes during one selection (its longest recent duration over the oracle's time per
        batch; None while either is unknown)."""
        limit = self.config.budget.in_flight_limit
        fill = -(-limit // q)
        if not self.latencies or not self.select_seconds:
            return fill, None
        per_batch = statistics.median(self.latencies) * q / limit
        behind = math.ceil(max(self.select_seconds) / per_batch) if per_batch > 0 else fill
        return fill, behind

    def _prefix_size(self, q: int) -> int:
        """Batches of the ready list assumed to go out while the next selection runs: the sends
        due (one per ``per_batch`` seconds of the oracle, counted from the last send) before it
        ends, its duration taken as the longest recent one; ``fill`` while unknown. A selection
        that ends before the next send assumes none: the batch after the next one is then
        screened with every result but the next burst's (the fewest a batch that never keeps
        the oracle waiting can miss)."""
        fill, behind = self._pace(q)
        if behind is None or not self.latencies or not self.select_seconds:
            return fill
        per_batch = statistics.median(self.latencies) * q / self.config.budget.in_flight_limit
        if per_batch <= 0:
            return fill
        since = 0.0 if self._last_send is None else time.monotonic() - self._last_send
        return min(2 * fill, math.floor((since + max(self.select_seconds)) / per_batch))

    def _batches_ahead(self, q: int) -> int:
        """How many batches one selection holds after its prefix: those the oracle takes while
        the next selection runs, plus one in case that one ends late (``fill`` while the
        oracle's pace is unknown), at most twice the limit. Few on purpose: every batch of a list
        is screened with the results known when the list was made, so a batch held back longer
        goes out staler (the async designs' quality loss), and greedy screening costs more per
        batch the more it holds."""
        fill, behind = self._pace(q)
        if behind is None:
            return fill
        return min(2 * fill, max(2, behind + 1))

    @staticmethod
    def _generate(generator: RoundGenerator, inputs: RoundInputs, tag: str, full: FullFit | None,
                  refit_every: int) -> tuple[Population, Rescored | None]:
        """A population tilted, once a full fit exists, with that fit conditioned on the results
        since (a refit every ``refit_every`` results, as a selection's): the SMC starts a fit's
        seconds sooner, so the population is that much less behind the results when it is used."""
        tilt = None
        if full is not None and generator.surrogate is not None:
            data = training_data(inputs.history, generator.config, inputs.imported)
            if data.n >= MIN_OBSERVATIONS:
                tilt = rescoring_fit(generator.surrogate, full, data, refit_every=refit_every)
        pop = generator.generate(
            inputs.index, inputs.history, tilted_rounds_before=inputs.tilted_before,
            previous_state=inputs.previous_state, imported=inputs.imported, seed_tag=tag,
            auto=inputs.auto, surrogate_fit=None if tilt is None else tilt.fit)
        return pop, tilt

    @staticmethod
    def _select(generator: RoundGenerator, pop: Population, number: int, available: np.ndarray,
                inputs: RoundInputs, index: int, q: int, total: int, sent: int, finished: int,
                prefix: list[_Batch], full: FullFit | None, refit_every: int,
                fresh_batches: int = 1, mc_samples: int | None = None) -> _Selection:
        started, t0, wall = time.monotonic(), time.perf_counter(), time.time()
        rescored = None
        if generator.surrogate is not None:
            data = training_data(inputs.history, generator.config, inputs.imported)
            if data.n >= MIN_OBSERVATIONS:
                if full is None:  # a plain-prior pool and no fit yet: the first one
                    fit = generator.surrogate.fit(data, previous_state=inputs.previous_state)
                    rescored = Rescored(fit=fit, kind="refit", full=FullFit(fit, data.n),
                                        seconds=time.perf_counter() - t0)
                else:
                    rescored = rescoring_fit(generator.surrogate, full, data, refit_every=refit_every)
        pending = [np.stack([np.asarray(b.plan.candidates[i].design, dtype=np.float64)
                             for i in b.plan.selected]) for b in prefix if b.plan.selected]
        plan = generator.select(pop, index, inputs.history, total, imported=inputs.imported,
                                available=available, previous_state=inputs.previous_state,
                                surrogate_fit=None if rescored is None else rescored.fit,
                                pending=np.concatenate(pending) if pending else None,
                                num_mc_samples=mc_samples)
        if rescored is not None:
            plan.timings["fit_s"] = rescored.seconds
        # how it was selected: the surrogate, the batches it assumed go out first, when it ran
        plan.summary.setdefault("population", {}).update(
            refit=rescored is not None and rescored.kind == "refit",
            rescore=None if rescored is None else rescored.kind, after=len(prefix),
            selection=[wall, time.time()])
        plans = split_plan(plan, q)
        return _Selection(
            batches=[_Batch(plan=p, population=number, finished=finished, started=started)
                     for p in plans],
            prefix=prefix, sent=sent, seconds=time.perf_counter() - t0, rescored=rescored,
            fresh_batches=fresh_batches)


def _completed(history: History | HistoryColumns) -> int:
    """Succeeded queries of a row-wise history or of the driver's columns (a mask there)."""
    if isinstance(history, HistoryColumns):
        return int(history.completed.sum())
    return len(history.completed)
