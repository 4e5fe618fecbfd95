"""The campaign driver: the one process that generates rounds and talks to the oracle.

Loop (every step reads its state from the database, so a fresh process resumes anywhere):

1. poll in-flight queries, store results (exactly once, conditional transitions); send any
   outbox queries already committed;
2. while the budget is not spent, the stop target not reached, and a round's q fits under the
   in-flight limit: generate a round (workers) and record it with its outbox in ONE transaction;
   a new round may start while earlier queries are still out — they are its pending points;
3. dispatch outbox queries under the in-flight limit (job id stored as soon as known);
4. mark rounds whose queries all finished ``complete``; sleep ``poll_interval_s`` when idle;
5. stop when nothing is in flight and the budget is spent (or the target reached);
6. budget guards (``optimizer.campaign.guards``): too many failures pause the campaign with the
   grouped reasons instead of spending its budget;
7. each unit of work (restore, poll, dispatch, the reads before a round, recording a round,
   closing rounds) runs through :class:`storage.outage.OutageRetry`: a lost database connection
   is retried with backoff for ``storage.outage_window_s`` (each unit is idempotent: conditional
   transitions, idempotency keys, a round written twice with the same content is a no-op); the
   SMC of a round is not redone for a failed write. Past the window the driver stops with
   :class:`~storage.outage.DatabaseOutage`, whose message names ``tiltloop resume``. On SQLite
   (a file: no connection to lose) errors end the run at once, as before.

    >>> driver = CampaignDriver(config, storage, oracle, generator)   # doctest: +SKIP
    >>> status = driver.run()                                         # doctest: +SKIP
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_constraints import feasibility_counts, is_feasible, recorded_outputs
from optimizer.campaign.config_oracle import is_pull
from optimizer.campaign.crashpoints import crash_point
from optimizer.campaign.dispatch import Dispatcher
from optimizer.campaign.failures import group_failures
from optimizer.campaign.guards import BudgetGuard, GuardTrip
from optimizer.campaign.history_arrays import ColumnarHistoryCache, auto_inputs, best_of_columns
from optimizer.campaign.history_cache import HistoryCache
from optimizer.campaign.pipeline import AsyncRounds, RoundInputs
from optimizer.campaign.pull_dispatch import PullDispatcher
from optimizer.campaign.query_limits import QueryLimits
from optimizer.campaign.rounds import RoundGenerator, RoundPlan
from storage import History, QueryRecord, Storage
from storage.outage import OutageRetry

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CampaignStatus:
    """Where a campaign stands (``tiltloop status``; ``--json`` prints it as JSON)."""

    name: str
    status: str
    budget: int
    rounds: int
    queries: dict[str, int]
    in_flight: int
    results: int
    best: float | None
    best_key: str | None
    objective: str
    direction: str
    stop_target: float | None = None
    target_reached: bool = False
    #: failed queries grouped by cause: ``(cause, count, example key)``, most frequent first
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    #: why the campaign is paused (a budget guard, or an operator), when it is
    paused_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: per-round sampler diagnostics and batch figures
    #: (``optimizer.campaign.round_summary.campaign_round_diagnostics``), when asked for
    diagnostics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        best = "none yet" if self.best is None else f"{self.best:.6g} ({self.best_key})"
        text = (f"{self.name}: {self.status}, round {self.rounds}, queries "
                f"{sum(self.queries.values())}/{self.budget} ({self.results} results, "
                f"{self.queries.get('failed', 0)} failed, {self.in_flight} in flight), "
                f"best {self.objective} = {best}")
        feas = self.extra.get("feasibility")
        if feas:  # [[constraints]]: the best above is the best feasible result
            text += (f"\n  constraints: {feas['feasible']} feasible, {feas['infeasible']} infeasible "
                     "results (best: the best feasible)")
        for oracle, o in self.extra.get("oracles", {}).items():
            text += (f"\n  oracle {oracle}: {o['queries']} queries"
                     + (f"/{o['budget']}" if o.get("budget") else "")
                     + f" x cost {o['cost']:g} = spend {o['spend']:.4g}")
            if o.get("in_flight") and self.status == "completed":  # given up on at the finish
                text += (f", {o['in_flight']} unanswered (`tiltloop resume {self.name}` "
                         "collects them)")
        if self.paused_reason:
            text += f"\n  paused: {self.paused_reason}"
        if self.failures:
            text += "\n  failures by cause:\n" + "\n".join(
                f"    {n}× {cause}" for cause, n, _ in self.failures[:5])
        if self.diagnostics:
            from optimizer.campaign.round_summary import status_lines

            text += "".join("\n" + ln for ln in status_lines(self.diagnostics))
        return text


Best = tuple[float | None, str | None]


class DriverObserver(Protocol):
    """Told what a driver did (the service's metrics); called on the driver's thread, so an
    observer must be quick and must not raise."""

    def round_recorded(self, campaign: str, timings: Mapping[str, float]) -> None:
        """A round and its outbox were committed; ``timings`` are seconds per phase."""

    def queries_finished(self, campaign: str, records: Sequence[QueryRecord]) -> None:
        """These queries reached a final status (stored exactly once) in this pass."""


def best_of(records: Any, config: CampaignConfig, best: Best = (None, None)) -> Best:
    """The best primary-objective value (and its key) among ``records`` and ``best``: the best
    feasible one when the campaign has ``[[constraints]]``."""
    obj = config.primary_objective
    sign = 1.0 if obj.direction == "maximize" else -1.0
    value, key = best
    for q in records:
        if config.constraints and not is_feasible(q.values, config.constraints):
            continue
        v = (q.values or {}).get(obj.name)
        if v is not None and (value is None or sign * v > sign * value):
            value, key = float(v), q.key
    return value, key


def campaign_status(storage: Storage, name: str, config: CampaignConfig,
                    history: History | None = None, *, best: Best | None = None,
                    with_failures: bool = True, with_diagnostics: bool = False) -> CampaignStatus:
    """Summarize a stored campaign (``best``: the best so far when the caller tracks it; else it
    is read from the history, without designs). ``with_failures=False`` skips reading and
    grouping the failure reasons (the driver's per-pass progress line needs only the counts);
    ``with_diagnostics=True`` adds the per-round sampler diagnostics and the batch figures
    (``tiltloop status``: it reads every round and result)."""
    rec = storage.load_campaign(name)
    counts = storage.query_counts(name)
    obj = config.primary_objective
    sign = 1.0 if obj.direction == "maximize" else -1.0
    if best is None or (config.constraints and with_failures):
        history = history or storage.load_history(name, with_design=False)
        best = best_of(history.completed, config) if best is None else best
    best_value, best_key = best
    target = config.budget.stop_target
    reached = target is not None and best_value is not None and sign * best_value >= sign * target
    rounds, _ = storage.round_tally(name)
    failures: list[tuple[str, int, str]] = []
    if counts["failed"] and with_failures:
        failures = [(g.cause, g.count, g.example_key)
                    for g in group_failures(storage.failure_reasons(name))]
    return CampaignStatus(
        name=name, status=rec.status, budget=config.budget.total, rounds=rounds,
        queries=counts, in_flight=counts["pending"] + counts["dispatched"] + counts["running"],
        results=counts["succeeded"], best=best_value, best_key=best_key, objective=obj.name,
        direction=obj.direction, stop_target=target, target_reached=reached, failures=failures,
        paused_reason=paused_reason(storage, name) if rec.status == "paused" else None,
        diagnostics=_diagnostics(storage, name, config) if with_diagnostics else None,
        extra={**({"feasibility": feasibility_counts(history.completed, config.constraints)}
                  if config.constraints and history is not None else {}),
               **_oracles_extra(storage, config, sum(counts.values()))},
    )


def _oracles_extra(storage: Storage, config: CampaignConfig, queries: int) -> dict[str, Any]:
    """``{"oracles": per-oracle counts and spend}`` with cheap oracles (``[[oracles]]``)."""
    if not config.oracles:
        return {}
    from optimizer.campaign.fidelity import fidelity_status

    return {"oracles": fidelity_status(storage, config, queries)}


def _diagnostics(storage: Storage, name: str, config: CampaignConfig) -> dict[str, Any]:
    from optimizer.campaign.pareto_summary import campaign_pareto
    from optimizer.campaign.round_summary import campaign_round_diagnostics

    obj = config.primary_objective
    return {**campaign_round_diagnostics(storage, name, obj.name, obj.direction, config.constraints),
            "pareto": campaign_pareto(storage, name) if len(config.objectives) > 1 else None}


def resume_command(name: str, storage: Storage) -> str:
    """``tiltloop resume NAME``, with ``--url`` (password hidden) when the campaign's database
    is not the one ``resume`` would open by default."""
    from storage.engine import default_url, parse_url, redact
    from storage.errors import StorageError

    url = getattr(getattr(storage, "engine", None), "url", None)
    try:
        default = redact(parse_url(default_url()))
    except StorageError:  # a malformed $TILTLOOP_DATABASE_URL: name the URL explicitly
        default = None
    if url is None or redact(url) == default:
        return f"tiltloop resume {name}"
    return f"tiltloop resume {name} --url '{redact(url)}'"


def outage_retry(config: CampaignConfig, storage: Storage, *,
                 should_stop: Callable[[], bool] | None = None,
                 on_recovered: Callable[[], None] | None = None) -> OutageRetry:
    """The driver's ride through a database outage: ``storage.outage_window_s``, the resume
    command of this database, and off on SQLite (a file has no connection to lose)."""
    return OutageRetry(config.storage.outage_window_s, campaign=config.name,
                       should_stop=should_stop, on_recovered=on_recovered,
                       resume_command=resume_command(config.name, storage),
                       enabled=getattr(storage, "dialect", "postgresql") != "sqlite")


def paused_reason(storage: Storage, name: str) -> str | None:
    """The reason of the campaign's latest pause (from its event log)."""
    events = storage.list_events(name, kind="campaign.paused")
    return str(events[-1].payload.get("reason")) if events else None


class CampaignDriver:
    """Runs one campaign to its budget (or stop target) against its oracle.

    Args:
        config: the campaign config (as stored with the campaign).
        storage: an open ``Storage`` whose campaign ``config.name`` exists.
        oracle: the oracle, wrapped in ``oracles.safe.SafeOracle`` (None for a pull campaign).
        generator: makes rounds (``RoundGenerator``); built lazily by ``make_generator`` if None.
        progress: receives one line per event worth showing (rounds, results, best so far).
        observer: told of each recorded round and each pass's finished queries (metrics).
        should_stop: asked every pass; True ends the run (the service is shutting down).
    """

    def __init__(self, config: CampaignConfig, storage: Storage, oracle: Any,
                 generator: RoundGenerator | None = None, *,
                 make_generator: Callable[[], RoundGenerator] | None = None,
                 progress: Progress | None = None, oracle_name: str | None = None,
                 config_version: int | None = None, observer: DriverObserver | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.storage = storage
        self.name = config.name
        self._generator = generator
        self._make_generator = make_generator
        self.say: Progress = progress or (lambda _m: None)
        self.oracle_name = oracle_name or str(getattr(oracle, "name", config.oracle.kind))
        self.dispatcher: Dispatcher | PullDispatcher
        if is_pull(config.oracle):  # labs claim and report through the service; read their reports
            self.dispatcher = PullDispatcher(storage, config.name,
                                             objectives=recorded_outputs(config),
                                             on_change=self.say)
        else:
            self.dispatcher = Dispatcher(storage, config.name, oracle,
                                         objectives=recorded_outputs(config),
                                         limit=config.budget.in_flight_limit, on_change=self.say,
                                         limits=QueryLimits.from_config(config))
        self._last_line = ""
        self._best: Best | None = None  # best so far, updated from each poll's new results
        self._stale = False  # the status must be re-read (set after a database outage)
        self.guard = BudgetGuard(config.budget)
        #: the stored config version this driver runs (rounds record it); None: not versioned
        self.config_version = config_version
        self.config_changed = False
        #: the campaign lease this driver holds (``optimizer.campaign.lease.DriverLease``), if any
        self.lease: Any = None
        self.observer = observer
        self.should_stop = should_stop
        #: retries each unit of work through a database outage (see the module docstring)
        self.db = outage_retry(config, storage, on_recovered=self._after_outage,
                               should_stop=lambda: self.should_stop is not None and self.should_stop())
        #: the campaign's history and rounds in memory, refreshed by reading only what changed
        self.history = ColumnarHistoryCache(storage, config.name,
                                            fields=[o.name for o in config.objectives]
                                            + [c.name for c in config.constraints])
        self._imports: dict[str, HistoryCache] = {}
        #: the asynchronous round pipeline while ``run`` runs with ``[pipeline] mode = "async"``
        self.pipeline: AsyncRounds | None = None
        #: the cheap oracles of ``[[oracles]]`` (``optimizer.campaign.fidelity``), if any
        self.fidelity: Any = None
        if config.oracles:
            from optimizer.campaign.fidelity import FidelityStage

            self.fidelity = FidelityStage(config, storage, self.say)
            self.fidelity.call = self.db.call

    def _after_outage(self) -> None:
        """A unit retried after an outage may have done its work before the connection broke
        (results stored, queries sent); its retry does not report it again, so the best so far
        is re-read from the history and the status re-read at the next chance (a stale
        in-flight count would otherwise keep an idle driver waiting forever)."""
        self._best = None
        self._stale = True

    @property
    def generator(self) -> RoundGenerator:
        if self._generator is None:
            if self._make_generator is None:
                raise TypeError("CampaignDriver needs a generator or make_generator")
            self._generator = self._make_generator()
        return self._generator

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, *, once: bool = False, timeout_s: float | None = None) -> CampaignStatus:
        """Run until done (or one pass with ``once=True``: manual mode); returns the status."""
        if self.config.pipeline.mode == "async" and not once:
            self.pipeline = AsyncRounds(
                self.config, lambda: self.generator,
                lambda: self.db.call(self._round_inputs, "reading the history for the next round"),
                self._record, self.say)
        try:
            return self._run(once=once, timeout_s=timeout_s)
        finally:
            if self.pipeline is not None:
                self.pipeline.close()
                self.pipeline = None

    def _run(self, *, once: bool, timeout_s: float | None) -> CampaignStatus:
        cfg = self.config
        start = time.monotonic()
        unit = self.db.call
        restored = unit(self.dispatcher.restore, "restoring the queries in flight")
        if restored:
            self.say(f"resuming: {restored} quer{'y' if restored == 1 else 'ies'} already at the oracle, "
                     "re-polling them by stored job id")
        unit(lambda: self.storage.log_event(self.name, "driver.started",
                                            {"restored_in_flight": restored}),
             "logging the driver's start")
        status: CampaignStatus | None = None
        # A busy pass (results came in) is followed at once by the next one, but never sooner
        # than this: labs reporting a steady stream would otherwise keep the loop spinning.
        min_pass_s = min(cfg.budget.poll_interval_s, 0.25)
        while True:
            pass_start = time.monotonic()
            outcome, trip = unit(self._poll, "polling the oracle and recording results")
            if trip is not None:
                return unit(functools.partial(self._pause, trip), "pausing the campaign")
            stop = unit(self._stopped_from_outside, "checking the campaign's status")
            if stop is not None:
                return stop
            busy = outcome.finished > 0
            # paid-for outbox first, then new rounds
            busy |= unit(self.dispatcher.dispatch, "dispatching queries") > 0
            if busy or status is None or self._stale:  # an idle pass changed nothing: skip the reads
                status = unit(self._status, "reading the campaign's status")
            created = sum(status.queries.values())
            remaining = cfg.budget.total - created
            if not status.target_reached and remaining > 0:
                if self.pipeline is not None and not once:
                    busy |= self.pipeline.step(in_flight=status.in_flight, remaining=remaining,
                                               finished=created - status.in_flight)
                else:
                    q = min(cfg.budget.q, remaining)
                    if status.in_flight + q <= cfg.budget.in_flight_limit:
                        self._round(q)
                        busy = True
            busy |= unit(self.dispatcher.dispatch, "dispatching queries") > 0
            if busy or self._stale:
                self._stale = False  # rounds closed and status read below (a new outage sets it)
                unit(self._close_rounds, "closing finished rounds")
                status = unit(self._status, "reading the campaign's status")
                self._report(status)
            created = sum(status.queries.values())
            if status.in_flight == 0 and (created >= cfg.budget.total or status.target_reached):
                if self.fidelity is not None:  # cheap queries still out: answered or given up
                    self.fidelity.finish(self._halting)
                    trip = self.fidelity.take_trip()
                    if trip is not None:
                        return unit(functools.partial(self._pause, trip), "pausing the campaign")
                    stop = unit(self._stopped_from_outside, "checking the campaign's status")
                    if stop is not None:
                        return stop
                return unit(functools.partial(self._finish, status), "marking the campaign completed")
            if once:
                return unit(self._final_status, "reading the campaign's status")
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                self.say(f"stopping after {timeout_s:.0f} s; `tiltloop resume {self.name}` continues")
                return unit(self._final_status, "reading the campaign's status")
            pause = cfg.budget.poll_interval_s if not busy else max(
                0.0, min_pass_s - (time.monotonic() - pass_start))
            if self.pipeline is not None and self.pipeline.busy:
                self.pipeline.wait(pause)  # background work that finishes wakes the loop
            else:
                time.sleep(pause)

    def _poll(self) -> tuple[Any, GuardTrip | None]:
        """One poll and what it means for the best so far and the budget guard."""
        outcome = self.dispatcher.poll()
        return outcome, self._observe(outcome)

    def _finish(self, status: CampaignStatus) -> CampaignStatus:
        """Mark the campaign completed (the budget is spent or the target reached)."""
        # labs of a pull campaign write results themselves: one that landed after this
        # pass's poll is read now, so the best so far includes it
        self._observe(self.dispatcher.poll())
        final = "completed"
        created = sum(status.queries.values())
        self.storage.update_campaign(self.name, status=final)
        self.storage.log_event(self.name, "driver.finished", {
            "queries": created, "best": status.best, "target_reached": status.target_reached})
        self.say(f"campaign {self.name} {final}: {created} queries, best "
                 f"{status.objective} = {status.best}")
        return self._status(final=True)

    def _final_status(self) -> CampaignStatus:
        return self._status(final=True)

    def _round_inputs(self) -> RoundInputs:
        """What a round is generated from: its index, the tilted rounds before it, the previous
        surrogate, the history, the imported results and (``alpha = "auto"``) the prior sample
        and last round's gap (the history cache reads only what changed since its last refresh;
        the previous surrogate is one round's row)."""
        self.history.refresh()
        tilted = self.history.tilted_rounds
        previous = self.storage.load_round(self.name, tilted[-1]).surrogate_blob if tilted else None
        # α auto: the plain-prior round's candidates (read once) and the gap from the columns
        obj = self.config.primary_objective
        auto = (auto_inputs(self.history, obj.name, obj.direction == "maximize")
                if self.config.sampler.alpha_auto else None)
        return RoundInputs(index=self.history.next_round_index, tilted_before=len(tilted),
                           previous_state=previous, history=self.history.columns(),
                           imported=self._imported(), auto=auto)

    def _round(self, q: int) -> None:
        inputs = self.db.call(self._round_inputs, "reading the history for the next round")
        self.say(f"round {inputs.index}: generating {self.config.workers.particles_per_round} "
                 f"particles on {self.config.workers.count} worker(s)")
        if self.fidelity is not None:  # cheap oracles first, then the expensive pick
            plan = self.fidelity.plan(self.generator, inputs, q, stop=self._halting)
            trip = self.fidelity.take_trip()
            if trip is not None:  # a cheap oracle keeps failing: pause, naming it
                self.db.call(functools.partial(self._pause, trip), "pausing the campaign")
                return
            if self._halting():  # paused / cancelled / lease lost during the cheap wait
                self.say(f"round {inputs.index}: the campaign stops; its [oracle] pick is not "
                         "recorded (the cheap answers are kept)")
                return
            self._record(plan)
            return
        self._record(self.generator.plan(
            inputs.index, inputs.history, q, tilted_rounds_before=inputs.tilted_before,
            previous_state=inputs.previous_state, imported=inputs.imported, auto=inputs.auto))

    def _record(self, plan: RoundPlan) -> None:
        """Record ``plan`` and its outbox in one transaction (the queries go out on dispatch)."""
        index = plan.index
        # a write whose connection broke may have committed: written again with the same
        # content, the round is a no-op (so the SMC above is never redone for a database error)
        self.db.call(lambda: self.storage.record_round(
            self.name, index, alpha=plan.alpha, candidates=plan.candidates, selected=plan.selected,
            oracle_name=self.oracle_name, surrogate_state=plan.surrogate_state,
            surrogate_blob=plan.surrogate_blob, timings=plan.timings, summary=plan.summary,
            config_version=self.config_version,
            unique_ancestors=plan.unique_ancestors), f"recording round {index} and its outbox")
        crash_point("outbox")
        if self.observer is not None:
            self.observer.round_recorded(self.name, plan.timings)
        kind = (f"tilted, α={plan.alpha:g}" if plan.tilted else
                "plain prior, screened" if plan.surrogate_state else "plain prior, space-filling")
        chosen = plan.summary.get("alpha_auto")
        if chosen and chosen.get("kl") is not None:
            kind += f" auto, est. KL {chosen['kl']:.3g} nats" + (", braked" if chosen["brake"] else "")
        pop = plan.summary.get("population")
        source = f" from round {pop['round']}'s population" if pop and pop["round"] != index else ""
        self.say(f"round {index}: {len(plan.candidates)} candidates{source} ({kind}), "
                 f"{len(plan.selected)} selected; fit {plan.timings['fit_s']:.1f} s, "
                 f"SMC {plan.timings['smc_s']:.1f} s")

    def _imported(self) -> list[Any]:
        """Succeeded queries of the campaigns named in ``history.import_from`` (read each round:
        a source that is still running keeps contributing). A source deleted since is skipped
        with a warning; the rest of the campaign goes on."""
        from storage.errors import NotFound

        out: list[Any] = []
        for source in self.config.history.import_from:
            cache = self._imports.setdefault(source, HistoryCache(self.storage, source))
            try:
                cache.refresh()
                out += cache.history().completed
            except NotFound:
                self._imports.pop(source, None)  # re-created later: read it afresh
                log.warning("campaign %s: history.import_from names campaign %s, which no longer "
                            "exists; its results no longer warm-start the surrogate", self.name, source)
        return out

    def _status(self, *, final: bool = False) -> CampaignStatus:
        """The status, with the best so far tracked here: from the history cache (brought up to
        date) once per driver and after an outage, then from each poll's new results
        (Optuna-style slowdown at 10^5 queries came from re-reading every result every pass).
        Failure causes are grouped only for the ``final`` status a run returns."""
        if self._best is None:
            self.history.refresh()
            obj = self.config.primary_objective
            self._best = best_of_columns(self.history.columns(), obj.name, obj.direction == "maximize",
                                         constraints=self.config.constraints)
        return campaign_status(self.storage, self.name, self.config, best=self._best,
                               with_failures=final)

    def _halting(self) -> bool:
        """Whether this driver must stop now (shutdown, lost lease, campaign no longer active):
        the cheap oracles' wait checks it at every poll."""
        if (self.should_stop is not None and self.should_stop()) or (
                self.lease is not None and self.lease.lost):
            return True
        return bool(self.db.call(lambda: self.storage.load_campaign(self.name).status,
                                 "checking the campaign's status") != "active")

    def _stopped_from_outside(self) -> CampaignStatus | None:
        """A status other than active (``tiltloop campaign pause|cancel`` from another shell) or
        a new config version ends this driver's run; results already polled are stored."""
        if self.should_stop is not None and self.should_stop():
            self.say(f"campaign {self.name}: this driver is shutting down; another driver "
                     "continues the campaign from the database")
            return self._status(final=True)
        if self.lease is not None and self.lease.lost:
            self.say(f"campaign {self.name}: this driver lost the campaign lease to another "
                     "driver; it stops (everything it sent is recorded)")
            return self._status(final=True)
        status = self.storage.load_campaign(self.name).status
        if status != "active":
            self.say(f"campaign {self.name} is {status}; this driver stops (queries at the oracle "
                     "stay recorded and are re-polled on resume)")
            return self._status(final=True)
        if self.config_version is not None:
            current = self.storage.current_config_version(self.name)
            if current != self.config_version:
                self.config_changed = True
                self.say(f"campaign {self.name}: config version {current} replaces version "
                         f"{self.config_version}; reloading it")
                return self._status(final=True)
        return None

    def _observe(self, outcome: Any) -> GuardTrip | None:
        """Track the best so far and feed the budget guard with this poll's finished queries."""
        keys = (*outcome.succeeded, *outcome.failed)
        if not keys:
            return None
        new = self.storage.get_queries(keys)  # one statement however many finished
        if self.observer is not None:
            self.observer.queries_finished(self.name, new)
        if self.pipeline is not None:
            self.pipeline.observe(new)
        if self._best is not None and outcome.succeeded:
            self._best = best_of([q for q in new if q.status == "succeeded"], self.config, self._best)
        if not outcome.failed:
            self.guard.observe(new, {})
            return None
        self.history.refresh()  # round sizes never change once recorded: the cache counts them
        return self.guard.observe(new, self.history.round_sizes())

    def _pause(self, trip: GuardTrip) -> CampaignStatus:
        """Stop dispatching: mark the campaign paused with the reason and the grouped causes."""
        groups = group_failures(self.storage.failure_reasons(self.name))
        top = "; ".join(f"{g.count}× {g.cause}" for g in groups[:3])
        reason = f"{trip.message}; causes: {top}" if top else trip.message
        self.storage.update_campaign(self.name, status="paused")
        self.storage.log_event(self.name, "campaign.paused", {
            "reason": reason, "rule": trip.rule, "keys": list(trip.keys[-16:])})
        log.warning("campaign %s paused by its budget guard: %s (last failed keys: %s)",
                    self.name, reason, ", ".join(trip.keys[-8:]) or "-")
        self.say(f"campaign {self.name} paused: {reason}; fix the cause, then "
                 f"`tiltloop resume {self.name}`")
        return self._status(final=True)

    def _close_rounds(self) -> None:
        open_rounds = [i for i, _ in self.storage.round_states(self.name, status="open")]
        if not open_rounds:
            return
        # Only in-flight queries matter: a round is complete when none of its queries is left
        # (a GROUP BY: a pull campaign may have thousands queued for its labs).
        busy = self.storage.rounds_in_flight(self.name)
        for index in open_rounds:
            if index not in busy:
                self.storage.update_round(self.name, index, status="complete")

    def _report(self, status: CampaignStatus) -> None:
        line = status.line()
        if line != self._last_line:
            self._last_line = line
            self.say(line)

    def close(self) -> None:
        """Close the oracle (the pool and storage belong to the caller)."""
        self.dispatcher.close()
        if self.fidelity is not None:
            self.fidelity.close()

