"""Cheap evaluators in a round: the ``[[oracles]]`` score particles before ``[oracle]`` picks.

A round of a campaign with cheap oracles (``optimizer.campaign.config_fidelity``):

1. the SMC population is generated as usual (the reward is the expensive oracle's surrogate);
2. each cheap oracle `j` gets ``per_round`` of the particles (within its ``budget``), chosen by
   the expensive task's optimism under the multi-task GP fitted on ALL results
   (``optimizer.surrogate.multitask``: sequential greedy qUCB, `μ + β σ` per point, designs
   already sent to `j` left out); before the multi-task GP can be fitted (fewer than 2 results
   of the expensive oracle or of every cheap one) a maximin space-filling batch in feature space;
3. the round waits (at most ``wait_s``, polling) for those answers;
4. the expensive ``[oracle]``'s ``budget.q`` are picked by qLogNEI of the expensive task under
   the multi-task GP refitted with the new cheap answers, among the candidates the campaign's
   own screening left eligible (not observed, queried or pending); before the multi-task GP
   exists, the campaign's own screening picks them.

With ``[[constraints]]`` or a Pareto campaign the multi-task GP is one per modelled output
(``optimizer.campaign.fidelity_outputs``: the primary objective, or every objective of a Pareto
campaign, then each constraint slack; ``optimizer.surrogate.multitask_outputs``): the cheap pick
is qUCB of the primary objective weighted by feasibility (UCB x PoF), or of cheap oracle `j`'s
ParEGO scalarization (weights drawn from the campaign seed for the round and chunk `j − 1`: the
chunk's own with ``scalarization = "parego"``, the same draw with ``acquisition = "qlognehvi"``
alone); the expensive pick constrained qLogNEI,
or qLogNEHVI over the campaign's reference point. The candidates of a round the multi-task GP
picked store its ``[oracle]``-task prediction of the primary objective (``alpha = "auto"``'s
over-optimization gap compares it with the results).

Per unit cost: a cheap query costs ``cost`` (relative to one ``[oracle]`` query), so each round
spends ``per_round · cost`` on screening before ``q`` expensive queries, and the expensive pick
is conditioned on the cheap answers — it goes where the cheap oracle and the correlation the GP
learned (`B[0, j]`) agree the expensive value is high. A cheap oracle the GP finds uncorrelated
simply stops influencing the pick (its spend is still reported).

Storage and exactly-once: each cheap oracle's queries are a campaign of their own,
``{campaign}.{name}`` (created on the first round, paused in the same transaction and marked with its parent
so that no driver, scheduler or resume of its own picks it up; ``tiltloop status
{campaign}.{name}`` and ``export`` read it like any campaign). Its
round `k` holds the particles sent to it in the main round `k`, its outbox rows are written
before any is sent and go through the same :class:`~optimizer.campaign.dispatch.Dispatcher`
(keys ``{campaign}.{name}:{k}:{i}``, job ids stored, resubmission with the same key after a
crash). A driver that dies after the cheap round `k` was recorded finds it on resume and
re-polls / resubmits its queries by key instead of recording new ones.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_fidelity import MAIN, MARKER, CheapOracleConfig, child_name, is_child_of
from optimizer.campaign.config_oracle import build, reported_objectives
from optimizer.campaign.config_constraints import recorded_outputs
from optimizer.campaign.dispatch import Dispatcher
from optimizer.campaign.fidelity_outputs import (cheap_how, expensive_how, modelled_outputs,
                                                 task_results, with_predictions)
from optimizer.campaign.guards import BudgetGuard, GuardTrip
from optimizer.campaign.pareto_round import scaled_weights
from optimizer.campaign.query_limits import QueryLimits
from optimizer.campaign.rounds import RoundGenerator, RoundPlan, training_data
from optimizer.campaign.spacefill import maximin_select
from optimizer.seeds import derive_seed
from optimizer.threads import torch_threads
from storage import IN_FLIGHT, NewCandidate, Storage
from storage.errors import CampaignExists, NotFound

log = logging.getLogger(__name__)
#: candidates scored by the batch acquisitions (the best by single-point UCB): keeps a greedy
#: step's cost flat whatever the population size
PREFILTER = 512
__all__ = ["FidelityStage", "check_cheap_oracles", "child_name", "fidelity_status"]


@dataclass
class _Cheap:
    config: CheapOracleConfig
    campaign: str
    dispatcher: Dispatcher
    guard: BudgetGuard
    #: the oracle's position in ``[[oracles]]`` (errors name the field ``oracles.{index}``)
    index: int = 0
    restored: bool = False


class FidelityStage:
    """The cheap-oracle part of a campaign's rounds (see the module docstring).

    Args:
        config: the campaign config (with ``[[oracles]]``).
        storage: the campaign's store.
        say: progress output.
        oracles: cheap oracle objects by name (default: built from the config).
    """

    def __init__(self, config: CampaignConfig, storage: Storage, say: Callable[[str], None],
                 oracles: dict[str, Any] | None = None) -> None:
        self.config = config
        self.storage = storage
        self.say = say
        outputs = recorded_outputs(config)
        self.cheap = []
        for i, c in enumerate(config.oracles):
            name = child_name(config.name, c.name)
            oracle = (oracles or {}).get(c.name) or build(c.oracle)
            # a cheap oracle reports at least the outputs the picks model (config_fidelity checks
            # it); whatever else of the campaign's outputs it reports is recorded too
            reported = set(reported_objectives(c.oracle))
            self.cheap.append(_Cheap(c, name, Dispatcher(
                storage, name, oracle, objectives=[o for o in outputs if o in reported],
                limit=max(c.per_round, 1) * 2,
                on_change=_prefixed(say, c.name),
                limits=QueryLimits.from_config(config)), BudgetGuard(config.budget), index=i))
        self.last: dict[str, Any] = {}
        #: set when a cheap oracle's failures trip the campaign's budget guard (the driver
        #: pauses the campaign with it; see :meth:`take_trip`)
        self.trip: GuardTrip | None = None
        #: runs one unit of storage work through a database outage (the driver sets its own
        #: ``driver.db.call``; by default a retry of this campaign's ``storage.outage_window_s``)
        self.call: Callable[[Callable[[], Any], str], Any] = _outage_call(config, storage)
        #: the last multi-task fit's hyperparameters, one dict per output (warm start)
        self._hyper: list[dict[str, Any]] | None = None
        #: the outputs the multi-task GPs model (``modelled_outputs``)
        self.outputs = modelled_outputs(config)

    # ---- the round ------------------------------------------------------------------------------
    def plan(self, generator: RoundGenerator, inputs: Any, q: int,
             stop: Callable[[], bool] | None = None) -> RoundPlan:
        """Round ``inputs.index``: population, cheap queries (recorded, sent, waited for), then
        the expensive pick (see the module docstring). ``stop`` (checked at every poll of the
        wait) ends the wait early: the driver then checks it again before recording the pick."""
        cfg = self.config
        index = inputs.index
        self._ensure_children()
        pop = generator.generate(index, inputs.history, tilted_rounds_before=inputs.tilted_before,
                                 previous_state=inputs.previous_state, imported=inputs.imported,
                                 auto=inputs.auto)
        features = self._features(generator)
        main = training_data(inputs.history, cfg, inputs.imported)
        info: dict[str, Any] = {"oracles": {}}
        with torch_threads(cfg.surrogate.threads):
            # hyperparameters fitted once a round, before the cheap picks; after the cheap
            # answers the GP is conditioned on them with the same hyperparameters
            mt = self._multitask(features, main, pop.features, refit=True)
            for j, cheap in enumerate(self.cheap, start=1):
                sent = self._cheap_round(cheap, j, index, pop, features, main, mt)
                info["oracles"][cheap.config.name] = {"sent": sent}
        self._wait(stop)
        plan = generator.select(pop, index, inputs.history, q, imported=inputs.imported)
        with torch_threads(cfg.surrogate.threads):
            mt = self._multitask(features, main, pop.features, refit=mt is None)
            if mt is not None and plan.surrogate_state is not None:
                plan = self._expensive_pick(plan, mt, features, main, q)
        if mt is None or plan.surrogate_state is None:
            info["expensive_pick"] = "campaign screening (multi-task GP not ready)"
        else:
            info["expensive_pick"] = expensive_how(self.outputs)
            info["surrogate_mean"] = "multi-task GP, [oracle] task (primary objective)"
            info["task_correlation"] = dict(zip([MAIN, *(c.config.name for c in self.cheap)],
                                                [round(r, 4) for r in mt.task_correlation]))
        self.last = info
        return replace(plan, summary={**plan.summary, "fidelity": info})

    def _cheap_round(self, cheap: _Cheap, j: int, index: int, pop: Any,
                     features: Callable[[np.ndarray], np.ndarray], main: Any, mt: Any) -> int:
        """Record (once) and send round ``index``'s queries of cheap oracle ``cheap``; returns
        how many it holds."""
        c = cheap.config
        call, what = self.call, f"oracle {c.name}'s round {index}"
        try:
            existing = call(functools.partial(self.storage.load_round, cheap.campaign, index),
                            f"reading {what}")
            self.say(f"oracle {c.name}: round {index} already recorded ({len(existing.query_keys)} "
                     "queries); re-polling them by key")
            return len(existing.query_keys)
        except NotFound:
            pass
        weights: tuple[float, ...] | None = None
        counts = call(functools.partial(self.storage.query_counts, cheap.campaign),
                      f"counting oracle {c.name}'s queries")
        k = min(c.per_round, (c.budget - sum(counts.values())) if c.budget is not None else c.per_round)
        if k <= 0:
            return 0
        history = call(functools.partial(self.storage.load_history, cheap.campaign),
                       f"reading oracle {c.name}'s history")
        sent = [np.asarray(x.design, dtype=np.float64).reshape(-1)
                for x in (*history.completed, *history.in_flight, *history.failed) if x.design is not None]
        rows = _fresh_rows(pop.designs, sent)
        if not len(rows):
            return 0
        if mt is not None:
            pend = main.X_pending
            weights = self._cheap_weights(index, j)
            picked = mt.pick_cheap(*self._prefiltered(mt, pop.features[rows], k), k,
                                   beta=self.config.surrogate.beta, weights=weights,
                                   pending=torch.as_tensor(features(pend)) if pend.ndim > 1
                                   and len(pend) else None)
            choice = rows[self._unfilter(picked)]
            how = cheap_how(self.outputs)
        else:
            avoid = features(np.stack(sent)) if sent else None
            choice = rows[maximin_select(pop.features[rows], min(k, len(rows)), avoid=avoid,
                                         seed=derive_seed(self.config.seed, index, j, "cheap"))]
            how = "space-filling"
        cands = [NewCandidate(design=pop.designs[r], features=pop.features[r],
                              log_weight=float(pop.log_weights[r]), group=int(pop.group[r]),
                              particle=int(pop.particle[r])) for r in choice]
        # a write whose connection broke may have committed: written again with the same
        # content, the round is a no-op (the picks above are not redone for a database error)
        call(functools.partial(self.storage.record_round, cheap.campaign, index, alpha=pop.alpha,
                               candidates=cands, selected=list(range(len(cands))),
                               oracle_name=c.name,
                               summary={"fidelity": c.name, "cost": c.cost, "pick": how,
                                        "parent_round": index,
                                        **({"parego_weights": list(weights)}
                                           if mt is not None and weights else {})}),
             f"recording {what} and its outbox")
        self.say(f"oracle {c.name}: round {index}: {len(cands)} particles picked ({how}), "
                 f"cost {c.cost:g} each")
        return len(cands)

    _order: np.ndarray = np.zeros(0, dtype=np.int64)

    def _prefiltered(self, mt: Any, Z: np.ndarray, k: int) -> tuple[torch.Tensor]:
        """The ``PREFILTER`` rows of ``Z`` worth scoring (the highest `μ + β σ`; with
        constraints or several objectives their lowest Pareto layers, ``MultiTaskOutputs.
        prefilter``), kept for ``_unfilter``."""
        Zt = torch.as_tensor(np.asarray(Z, dtype=np.float64))
        self._order = mt.prefilter(Zt, max(PREFILTER, k), beta=self.config.surrogate.beta).numpy()
        return (Zt[torch.as_tensor(self._order)],)

    def _cheap_weights(self, index: int, j: int) -> tuple[float, ...] | None:
        """A Pareto campaign's cheap oracle `j` scalarizes by ParEGO weights drawn from the
        campaign seed for round ``index`` and chunk `j − 1` (cycling): with ``scalarization =
        "parego"`` the weights of that SMC chunk's target (``pareto_round.chunk_weights``); with
        ``acquisition = "qlognehvi"`` alone (no chunk is scalarized) the same seeded draw, so
        the cheap picks still spread over the front round by round."""
        if self.outputs.objectives == 1:
            return None
        return scaled_weights(self.config, index, (j - 1) % self.config.workers.num_chunks)

    def _unfilter(self, picked: list[int]) -> np.ndarray:
        return self._order[np.asarray(picked, dtype=np.int64)]

    def _expensive_pick(self, plan: RoundPlan, mt: Any, features: Callable[[np.ndarray], np.ndarray],
                        main: Any, q: int) -> RoundPlan:
        """Replace the plan's selection by the multi-task qLogNEI pick among its eligible
        candidates (the campaign's screening already set the exclusion reasons)."""
        eligible = np.array([i for i, c in enumerate(plan.candidates) if c.excluded_reason is None],
                            dtype=np.int64)
        if len(eligible) < q:
            return plan  # too few eligible: the campaign's own fill-in stands
        Z = np.stack([np.asarray(plan.candidates[i].features, dtype=np.float64).reshape(-1)
                      for i in eligible])
        (Zf,) = self._prefiltered(mt, Z, q)
        pend = main.X_pending
        picked = mt.pick_expensive(
            Zf, q, observed=torch.as_tensor(features(main.X)),
            pending=torch.as_tensor(features(pend)) if pend.ndim > 1 and len(pend) else None,
            reference=self._reference(main))
        sel = [int(i) for i in eligible[self._unfilter(picked)]]
        if len(sel) < q:
            return plan
        return replace(plan, selected=sel, population_rows=np.asarray(sel, dtype=np.int64),
                       candidates=with_predictions(plan.candidates, mt))

    def _reference(self, main: Any) -> torch.Tensor | None:
        """A Pareto campaign's reference point (signed): each objective's ``reference`` where
        given, else inferred from the front of the feasible expensive results (all of them
        while none is feasible), as the single-fidelity path (``pareto.feasible_reference``)."""
        m = self.outputs.objectives
        if m == 1:
            return None
        from optimizer.campaign.config_pareto import signed_reference
        from optimizer.surrogate.pareto import feasible_reference

        Y = np.asarray(main.Y, dtype=np.float64)[:, self.outputs.columns(self.config)]
        feasible = np.asarray((Y[:, m:] <= 0).all(-1), dtype=bool)
        return feasible_reference(Y[:, :m], feasible, signed_reference(self.config))

    # ---- the multi-task GP ----------------------------------------------------------------------
    def _multitask(self, features: Callable[[np.ndarray], np.ndarray], main: Any,
                   bounds_of: np.ndarray, *, refit: bool) -> Any:
        """The multi-task GP on every result (None before it can be fitted, or when it fails:
        the round then goes on without it, with a warning); hyperparameters warm-started from
        the last fit, and kept as they are with ``refit=False``."""
        from optimizer.errors import SurrogateError
        from optimizer.surrogate.multitask import MIN_PER_TASK
        from optimizer.surrogate.multitask_outputs import MultiTaskOutputs

        Z, Y = [], []
        if main.n < MIN_PER_TASK:
            return None
        Z.append(features(main.X))
        Y.append(np.asarray(main.Y, dtype=np.float64)[:, self.outputs.columns(self.config)])
        for cheap in self.cheap:
            X, y = task_results(self.call(functools.partial(
                self.storage.load_history, cheap.campaign),
                f"reading oracle {cheap.config.name}'s results"), self.config, self.outputs)
            Z.append(features(X) if len(y) else np.zeros((0, Z[0].shape[1])))
            Y.append(y)
        if max(len(y) for y in Y[1:]) < MIN_PER_TASK:
            return None
        allz = np.concatenate([*Z, np.asarray(bounds_of, dtype=np.float64).reshape(len(bounds_of), -1)])
        bounds = torch.as_tensor(np.stack([allz.min(0), allz.max(0)]))
        try:
            mt = MultiTaskOutputs.fit(
                [torch.as_tensor(z) for z in Z], [torch.as_tensor(y) for y in Y],
                objectives=self.outputs.objectives, bounds=bounds,
                seed=int(self.config.seed) % (2**31), previous=self._hyper, refit=refit,
                maxiter=self.config.surrogate.fit_maxiter)
            self._hyper = mt.hyperparameters
            return mt
        except SurrogateError as exc:
            log.warning("campaign %s: the multi-task GP could not be fitted (%s); this round's "
                        "picks use the campaign's own surrogate", self.config.name, exc)
            return None

    def _features(self, generator: RoundGenerator) -> Callable[[np.ndarray], np.ndarray]:
        adapter = generator.surrogate

        def phi(designs: np.ndarray) -> np.ndarray:
            designs = np.asarray(designs, dtype=np.float64)
            if adapter is None:
                return designs.reshape(len(designs), -1)
            return np.asarray(adapter.features(designs), dtype=np.float64).reshape(len(designs), -1)
        return phi

    # ---- dispatch -------------------------------------------------------------------------------
    def _ensure_children(self, only: list[_Cheap] | None = None) -> None:
        """Create each cheap oracle's campaign (once; ``only``: of these oracles), and restore
        its dispatcher's handles.

        Raises:
            PreflightError: a campaign of the child's name exists but is not this campaign's
                cheap-oracle log (an unrelated campaign is never adopted)."""
        for cheap in self.cheap if only is None else only:
            if cheap.restored:
                continue
            try:
                rec = self.call(functools.partial(self.storage.load_campaign, cheap.campaign),
                                f"reading oracle {cheap.config.name}'s campaign")
            except NotFound:
                rec = self._create_child(cheap)
            self._check_child(cheap, rec.config)
            n = self.call(cheap.dispatcher.restore,
                          f"restoring oracle {cheap.config.name}'s queries in flight")
            if n:
                self.say(f"oracle {cheap.config.name}: resuming: {n} quer{'y' if n == 1 else 'ies'} "
                         "already sent, re-polling them by stored job id")
            cheap.restored = True

    def _check_child(self, cheap: _Cheap, stored: Any) -> None:
        from optimizer.errors import PreflightError

        if not is_child_of(stored, self.config.name):
            raise PreflightError(
                f"field `oracles.{cheap.index}.name`: cheap oracle {cheap.config.name!r} logs its queries in "
                f"campaign {cheap.campaign!r}, but a campaign of that name exists and is not "
                f"campaign {self.config.name!r}'s cheap-oracle log; rename the oracle or delete "
                f"campaign {cheap.campaign!r}")

    def _create_child(self, cheap: _Cheap) -> Any:
        """Create the child campaign paused, with its parent marker, in one transaction (no
        scheduler or crash can ever see it active)."""
        c = cheap.config
        data = self.config.to_json_dict()
        q = c.per_round
        data.update(name=cheap.campaign, oracle=c.oracle.model_dump(mode="json"), oracles=[],
                    history={"import_from": []})
        data["budget"] = {**data["budget"], "q": q, "max_in_flight": 2 * q,
                          "total": max(c.budget or 2**62, q), "stop_target": None}
        data["workers"] = {**data["workers"], "particles_per_worker": max(
            data["workers"]["particles_per_worker"], q)}
        data["pipeline"] = {**data.get("pipeline", {}), "mode": "sync"}
        data[MARKER] = {"campaign": self.config.name, "oracle": c.name}
        call = self.call
        try:
            rec = call(functools.partial(self.storage.create_campaign, cheap.campaign, data,
                                         budget=c.budget, status="paused"),
                       f"creating oracle {c.name}'s campaign")
        except CampaignExists:
            # another driver of the same campaign created it meanwhile (checked by the caller),
            # or this create committed before its connection broke and the retry found it
            rec = call(functools.partial(self.storage.load_campaign, cheap.campaign),
                       f"reading oracle {c.name}'s campaign")
            if not is_child_of(rec.config, self.config.name):
                return rec  # not ours: the caller refuses it, nothing is logged in it
        # the pause reason is logged once, also when the create above was retried
        if not call(functools.partial(self.storage.list_events, cheap.campaign,
                                      kind="campaign.paused"),
                    f"reading oracle {c.name}'s campaign events"):
            reason = (f"cheap-oracle log of campaign {self.config.name} (oracle {c.name}): its "
                      f"queries are sent by {self.config.name}'s driver; "
                      f"`tiltloop resume {self.config.name}`")
            call(functools.partial(self.storage.log_event, cheap.campaign, "campaign.paused",
                                   {"reason": reason, "rule": "fidelity"}),
                 f"logging oracle {c.name}'s campaign as paused")
        return rec

    def _wait(self, stop: Callable[[], bool] | None = None, *, finishing: bool = False,
              only: list[_Cheap] | None = None, name_keys: bool = True) -> None:
        """Send every cheap oracle's outbox (``only``: these oracles') and poll until nothing is
        in flight, each one's ``wait_s`` has passed (the missing answers then come in during
        later rounds, or on resume when the campaign is ``finishing``), or ``stop()`` says the
        driver stops. A finish names the keys given up on at WARNING (``name_keys``; the
        collection of a completed campaign leaves that to its caller: logged once)."""
        start = time.monotonic()
        poll_s = min(self.config.budget.poll_interval_s, 1.0)
        waiting = list(self.cheap if only is None else only)
        call = self.call
        while waiting:
            if stop is not None and stop():
                self.say("stopping: the wait for the cheap oracles' answers ends early (they stay "
                         "recorded and are re-polled on resume)")
                return
            for cheap in waiting:
                d = cheap.dispatcher
                call(d.dispatch, f"dispatching oracle {cheap.config.name}'s queries")
                outcome = call(d.poll, f"polling oracle {cheap.config.name}")
                self._observe(cheap, outcome)
                call(d.dispatch, f"dispatching oracle {cheap.config.name}'s queries")
            if self.trip is not None:
                return
            still = []
            for cheap in waiting:
                counts = call(functools.partial(self.storage.query_counts, cheap.campaign),
                              f"counting oracle {cheap.config.name}'s queries")
                left = sum(counts[s] for s in IN_FLIGHT)
                if not left:
                    continue
                if time.monotonic() - start > cheap.config.wait_s:
                    if finishing and not name_keys:
                        continue
                    if finishing:
                        keys = [x.key for x in call(functools.partial(
                            self.storage.list_queries, cheap.campaign, statuses=IN_FLIGHT),
                            f"listing oracle {cheap.config.name}'s queries")]
                        log.warning("campaign %s: oracle %s: the campaign finishes with %d quer%s "
                                    "still unanswered after wait_s = %g s (keys %s); they stay "
                                    "recorded; `tiltloop resume %s` collects them by stored job "
                                    "id (the campaign stays completed)",
                                    self.config.name, cheap.config.name, left,
                                    "y" if left == 1 else "ies", cheap.config.wait_s,
                                    ", ".join(keys[:16]), self.config.name)
                        continue
                    log.warning("campaign %s: oracle %s: %d quer%s still unanswered after wait_s = "
                                "%g s; the [oracle] pick goes ahead without them (they are polled "
                                "again next round)", self.config.name, cheap.config.name, left,
                                "y" if left == 1 else "ies", cheap.config.wait_s)
                    continue
                still.append(cheap)
            waiting = still
            if waiting:
                time.sleep(poll_s)

    def _observe(self, cheap: _Cheap, outcome: Any) -> None:
        """Feed a cheap oracle's finished queries to its budget guard (the campaign's
        ``max_consecutive_failures`` / ``max_failure_fraction``); a trip names the oracle."""
        keys = (*outcome.succeeded, *outcome.failed)
        if not keys or self.trip is not None:
            return
        new = self.call(functools.partial(self.storage.get_queries, keys),
                        f"reading oracle {cheap.config.name}'s results")
        sizes: dict[int, int] = {}
        if outcome.failed:
            sizes = {r.index: len(r.query_keys) for r in self.call(
                functools.partial(self.storage.list_rounds, cheap.campaign),
                f"reading oracle {cheap.config.name}'s rounds")}
        trip = cheap.guard.observe(new, sizes)
        if trip is not None:
            self.trip = GuardTrip(trip.rule, f"cheap oracle {cheap.config.name} (campaign "
                                  f"{cheap.campaign}): {trip.message}", trip.keys)
            log.warning("campaign %s: cheap oracle %s trips the budget guard: %s (keys %s)",
                        self.config.name, cheap.config.name, trip.message,
                        ", ".join(trip.keys[-8:]) or "-")

    def take_trip(self) -> GuardTrip | None:
        """The budget-guard trip of a cheap oracle since the last call (None: none)."""
        trip, self.trip = self.trip, None
        return trip

    def finish(self, stop: Callable[[], bool] | None = None) -> None:
        """Before the campaign is marked finished: poll the cheap oracles' queries still in
        flight until answered or each oracle's ``wait_s`` runs out (a WARNING names the keys
        given up on; they stay recorded and a resume re-polls them)."""
        self._ensure_children()
        self._wait(stop, finishing=True)

    def collect(self, stop: Callable[[], bool] | None = None, *,
                counts: dict[str, int] | None = None) -> dict[str, list[str]]:
        """A finished campaign's cheap queries still out (its finish gave up on them after
        ``wait_s``): restore and poll only the oracles that have some, until answered or each
        ``wait_s`` runs out again (a WARNING names the keys still unanswered). Oracles with
        nothing out, or no log campaign of their own (none, or an unrelated campaign of that
        name), are not touched (nothing is created). Returns the keys still unanswered per oracle
        (empty: all collected); the caller logs them. ``counts``: the caller's
        ``fidelity_collect.in_flight_counts`` (default: counted here)."""
        from optimizer.campaign.fidelity_collect import in_flight_counts

        out: dict[str, list[str]] = {}
        if counts is None:
            counts = in_flight_counts(self.config, self.storage, self.call)
        waiting = [cheap for cheap in self.cheap if counts.get(cheap.config.name)]
        if not waiting:
            return {}
        self._ensure_children(waiting)
        self._wait(stop, finishing=True, only=waiting, name_keys=False)
        for cheap in waiting:
            keys = [x.key for x in self.call(functools.partial(
                self.storage.list_queries, cheap.campaign, statuses=IN_FLIGHT),
                f"listing oracle {cheap.config.name}'s queries")]
            if keys:
                out[cheap.config.name] = keys
        return out

    def close(self) -> None:
        """Close the cheap oracles' connections."""
        for cheap in self.cheap:
            cheap.dispatcher.close()


def _outage_call(config: CampaignConfig, storage: Storage) -> Callable[[Callable[[], Any], str], Any]:
    """The campaign's outage retry (``driver.outage_retry``): WARNINGs name the campaign, and
    it gives up after ``storage.outage_window_s``."""
    from optimizer.campaign.driver import outage_retry

    return outage_retry(config, storage).call


def _prefixed(say: Callable[[str], None], name: str) -> Callable[[str], None]:
    """Progress output naming the cheap oracle."""
    return lambda message: say(f"oracle {name}: {message}")


def _fresh_rows(designs: np.ndarray, sent: list[np.ndarray]) -> np.ndarray:
    """Rows of ``designs`` that are neither a repeat of an earlier row (SMC resampling makes
    copies) nor a design already sent to the oracle."""
    flat = np.asarray(designs, dtype=np.float64).reshape(len(designs), -1)
    _, first = np.unique(flat, axis=0, return_index=True)
    rows = np.sort(first)
    if sent:
        known = {np.asarray(s).tobytes() for s in sent}
        rows = np.array([r for r in rows if flat[r].tobytes() not in known], dtype=np.int64)
    return rows.astype(np.int64)


def fidelity_status(storage: Storage, config: CampaignConfig, main_queries: int) -> dict[str, Any]:
    """Per-oracle counts and spend (cost × queries; ``[oracle]`` costs 1 per query) for status."""
    out: dict[str, Any] = {MAIN: {"cost": 1.0, "queries": main_queries, "spend": float(main_queries),
                                  "budget": config.budget.total}}
    for c in config.oracles:
        try:
            counts = storage.query_counts(child_name(config.name, c.name))
        except NotFound:
            counts = {}
        n = int(sum(counts.values()))
        out[c.name] = {"cost": c.cost, "queries": n, "results": int(counts.get("succeeded", 0)),
                       "failed": int(counts.get("failed", 0)),
                       "in_flight": int(sum(counts.get(s, 0) for s in IN_FLIGHT)),
                       "spend": round(c.cost * n, 6), "budget": c.budget,
                       "campaign": child_name(config.name, c.name)}
    return out


def check_cheap_oracles(config: CampaignConfig, shape: tuple[int, ...], *, source: str) -> None:
    """Preflight of ``[[oracles]]``: each cheap oracle can be built and reached, and where it
    says what it takes (an HTTP lab's ``GET /health``, a simulated oracle) its design shape
    matches the prior's and it reports the primary objective.

    Raises:
        PreflightError: naming ``source`` and the field ``oracles.N.oracle``. Writes nothing.
    """
    from optimizer.errors import PreflightError
    from oracles.errors import OracleError
    from oracles.shape import check_design_shape, describe_oracle

    primary = config.primary_objective.name
    needed = modelled_outputs(config).names
    for i, c in enumerate(config.oracles):
        field = f"oracles.{i}.oracle"
        try:
            oracle = build(c.oracle)
        except (OracleError, ValueError) as exc:
            raise PreflightError(f"{source}: field `{field}`: {exc}") from None
        try:
            desc = describe_oracle(oracle)
            if desc is not None:
                check_design_shape(desc.design_shape, shape, where=f"cheap oracle {c.name!r}",
                                   prior=config.prior.name)
        except OracleError as exc:
            raise PreflightError(f"{source}: field `{field}`: {exc}") from None
        finally:
            oracle.close()
        if desc is not None and desc.objectives is not None and primary not in desc.objectives:
            raise PreflightError(
                f"{source}: field `{field}`: cheap oracle {c.name!r} reports objectives "
                f"{list(desc.objectives)}, not the primary objective {primary!r}")
        reports = () if desc is None or desc.objectives is None else tuple(desc.objectives)
        missing = [n for n in needed if reports and n not in reports]
        if missing:
            raise PreflightError(
                f"{source}: field `{field}`: cheap oracle {c.name!r} reports outputs "
                f"{list(reports)}, not {missing}, which the multi-fidelity surrogate "
                "models (Pareto objectives / [[constraints]] outputs)")
