"""Fill first, then rescore (``optimizer.campaign.pipeline``), step by step: ``AsyncRounds`` is
driven pass by pass with a real round generator (the tiny prior on a real Ray pool, the real
surrogate and screening) and a history kept here (real ``QueryRecord`` rows of the Bowl's
results), the test playing the driver: it records and sends what the pipeline hands over and
delivers results when it chooses. The background selection thread is held with a gate where an
order must be forced (a selection "still running" while batches go out), so every assertion is
about order, never about timing."""
from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from campaign_oracles import Bowl
from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.pipeline import AsyncRounds, RoundInputs, _Selection
from optimizer.campaign.rounds import RoundGenerator, RoundPlan
from optimizer.campaign.service import make_generator, make_pool
from storage import History, QueryRecord

pytestmark = pytest.mark.slow  # a Ray pool and real SMC populations

WAIT_S = 120.0  # every wait on background work has a limit (a loaded 2-core machine)


@dataclass
class _Driver:
    """The driver's side: the history the pipeline reads, the rounds it records (each batch's
    designs go in flight at once), the results delivered by the test."""

    name: str
    total: int
    bowl: Bowl = field(default_factory=lambda: Bowl(seed=0))
    completed: list[QueryRecord] = field(default_factory=list)
    in_flight: list[QueryRecord] = field(default_factory=list)
    recorded: list[RoundPlan] = field(default_factory=list)

    def record(self, plan: RoundPlan) -> None:
        assert not self.recorded or plan.index == self.recorded[-1].index + 1  # rounds in order
        self.recorded.append(plan)
        now = datetime.now(timezone.utc)
        for i in plan.selected:
            self.in_flight.append(self._query(plan.index, i, plan.candidates[i].design, now))

    def inputs(self) -> RoundInputs:
        index = self.recorded[-1].index + 1 if self.recorded else 0
        history = History(self.name, completed=tuple(self.completed), in_flight=tuple(self.in_flight))
        return RoundInputs(index=index, tilted_before=sum(p.tilted for p in self.recorded),
                           previous_state=None, history=history, imported=())

    def finish(self, n: int, *, latency_s: float) -> list[QueryRecord]:
        """The oldest ``n`` queries in flight succeed (dispatched ``latency_s`` ago)."""
        done, self.in_flight = self.in_flight[:n], self.in_flight[n:]
        now = datetime.now(timezone.utc)
        out = [QueryRecord(**{**q.__dict__, "status": "succeeded",
                              "values": self.bowl.score(np.asarray(q.design)),
                              "dispatched_at": now - timedelta(seconds=latency_s),
                              "finished_at": now}) for q in done]
        self.completed += out
        return out

    def step(self, pipe: AsyncRounds) -> bool:
        sent = sum(len(p.selected) for p in self.recorded)
        return pipe.step(in_flight=len(self.in_flight), finished=len(self.completed),
                         remaining=self.total - sent)

    def _query(self, index: int, i: int, design: Any, now: datetime) -> QueryRecord:
        return QueryRecord(key=f"{self.name}:{index}:{i}", campaign=self.name, round_index=index,
                           candidate_index=i, oracle_name="lab", status="dispatched", job_id=None,
                           attempts=1, values=None, noise=None, error=None, lease_owner=None,
                           lease_expires_at=None, created_at=now, updated_at=now,
                           dispatched_at=now, finished_at=None,
                           design=np.asarray(design, dtype=np.float64))


@pytest.fixture()
def generator(ray_session: str, tiny_prior_path: str, make_config, tmp_path) -> Iterator[Any]:
    """``generator(**pipeline)`` -> (config, RoundGenerator) on one real pool for the test."""
    pools: list[Any] = []

    def make(**pipeline: Any) -> tuple[CampaignConfig, RoundGenerator]:
        cfg = make_config("fill-first", tiny_prior_path, "http://127.0.0.1:9",
                          f"sqlite:///{tmp_path}/f.db", workers={"particles_per_worker": 32},
                          budget={"q": 2, "max_in_flight": 4, "total": 40},
                          pipeline={"mode": "async", "regenerate_every": 1000, "min_pool": 1,
                                    **pipeline})
        if not pools:
            pools.append(make_pool(cfg))
        return cfg, make_generator(cfg, pools[0])

    yield make
    for p in pools:
        p.shutdown()


def _pipeline(cfg: CampaignConfig, gen: RoundGenerator, drv: _Driver) -> AsyncRounds:
    return AsyncRounds(cfg, lambda: gen, drv.inputs, drv.record, lambda line: None)


def _job(future: cf.Future[Any] | None) -> Any:
    assert future is not None, "no background work was started"
    return future.result(timeout=WAIT_S)


def _seeded(drv: _Driver, n: int) -> None:
    """``n`` results before the pipeline starts (its first population is tilted)."""
    rng = np.random.default_rng(1)
    now = datetime.now(timezone.utc)
    for i in range(n):
        drv.in_flight.append(drv._query(-1, i, rng.uniform(-2, 2, size=2), now))
    drv.finish(n, latency_s=1.0)


def _set_pace(pipe: AsyncRounds, *, latency_s: float, select_s: float) -> None:
    """The oracle's pace and the selections' durations the pipeline plans with (q 2 of a limit
    of 4: a batch goes out every latency/2 s)."""
    pipe.latencies.clear()
    pipe.latencies.extend([latency_s] * 3)
    pipe.select_seconds.clear()
    pipe.select_seconds.append(select_s)


def _designs(plan: RoundPlan) -> set[tuple[float, ...]]:
    return {tuple(np.round(np.asarray(plan.candidates[i].design, dtype=float).ravel(), 12))
            for i in plan.selected}


def _first_list(drv: _Driver, pipe: AsyncRounds) -> None:
    """Population, then the first selection, harvested: a ready list, nothing sent yet
    (the oracle is kept full so the first pass sends nothing)."""
    assert not drv.step(pipe) and pipe._gen_job is not None  # no pool: a population starts
    _job(pipe._gen_job)
    assert not drv.step(pipe)  # harvests the tilted pool, starts a selection
    assert pipe.pool is not None and pipe.pool.tilted and pipe._sel_job is not None
    _job(pipe._sel_job)


def _settle(drv: _Driver, pipe: AsyncRounds, limit: int = 4) -> None:
    """Passes (each selection awaited) until the oracle is full and a harvested list waits."""
    for _ in range(12):
        drv.step(pipe)
        if pipe._sel_job is not None:
            _job(pipe._sel_job)
        elif len(drv.in_flight) >= limit and pipe._valid(pipe.ready):
            return
    raise AssertionError("the pipeline did not settle to a full oracle and a ready list")


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def test_ready_batch_goes_out_at_once_and_reselection_keeps_the_assumed_prefix(generator) -> None:
    cfg, gen = generator(rescore="never")
    drv = _Driver("fill-first", total=40)
    _seeded(drv, 4)
    pipe = _pipeline(cfg, gen, drv)
    gate = threading.Event()
    try:
        _first_list(drv, pipe)
        assert drv.step(pipe)  # harvested: the first batch goes out in the same pass
        first = pipe.ready
        assert first is not None and drv.recorded[-1] is first.batches[0].plan
        assert drv.step(pipe) and drv.recorded[-1] is first.batches[1].plan  # room for a second
        assert not drv.step(pipe)  # full (4 of 4 in flight): nothing goes out
        if pipe._sel_job is not None:  # the list ran out: its successor, with nothing new to know
            _job(pipe._sel_job)
            drv.step(pipe)

        # results arrive while a re-selection "runs" (held behind the gate): the ready batch,
        # screened before those results, goes out at once (fill first)
        held = pipe._sel_pool.submit(gate.wait, WAIT_S)
        _set_pace(pipe, latency_s=4.0, select_s=2.5)  # a batch per 2 s; a selection 2.5 s
        pipe.observe(drv.finish(2, latency_s=4.0))
        ready = pipe.ready
        assert ready is not None and pipe._valid(ready)
        head = ready.next
        assert head is not None and head.finished < len(drv.completed)  # stale by results
        assert drv.step(pipe)  # sent although a selection is queued behind the gate
        assert drv.recorded[-1] is head.plan
        assert not drv.step(pipe)  # full again: the pass starts the re-selection instead
        assert pipe._sel_job is not None and not pipe._sel_job.done()
        before = list(ready.unsent)
        gate.set()
        _job(held)
        new: _Selection = _job(pipe._sel_job)
        # one send is due within its 2.5 s (a batch per 2 s): it assumed the list's next batch
        assert [b is x for b, x in zip(new.prefix, before, strict=False)] == [True] * len(new.prefix)
        assert len(new.prefix) == 1 and new.batches
        assert all(b.finished == len(drv.completed) for b in new.batches)
        drv.step(pipe)  # harvest: the prefix stays, the rest of the list is replaced
        after = pipe.ready
        assert after is not None and _same(after.batches[:1], new.prefix)
        assert _same(after.batches[1:], new.batches)
        assert not any(b is x for b in after.batches[1:] for x in before)
        # the new batches treated the prefix's designs as pending: none of them is repeated
        taken = _designs(new.prefix[0].plan)
        assert all(not (_designs(b.plan) & taken) for b in new.batches)
        # the next sends are the kept prefix, then the re-selected batches, in order
        pipe.observe(drv.finish(4, latency_s=4.0))
        assert drv.step(pipe) and drv.recorded[-1] is new.prefix[0].plan
        assert drv.step(pipe) and drv.recorded[-1] is new.batches[0].plan
        sent = [d for p in drv.recorded for d in _designs(p)]
        assert len(sent) == len(set(sent)) == 2 * len(drv.recorded)  # no design sent twice
    finally:
        gate.set()
        pipe.close()


def test_selection_overtaken_by_more_sends_than_it_assumed_is_dropped(generator) -> None:
    cfg, gen = generator(rescore="never")
    drv = _Driver("dropped", total=40)
    _seeded(drv, 4)
    pipe = _pipeline(cfg, gen, drv)
    gate = threading.Event()
    try:
        _first_list(drv, pipe)
        _set_pace(pipe, latency_s=400.0, select_s=0.5)  # a batch per 200 s: it assumes none
        _settle(drv, pipe)
        listed = pipe.ready
        assert listed is not None and len(listed.unsent) == 2  # the next and a spare
        held = pipe._sel_pool.submit(gate.wait, WAIT_S)
        pipe.observe(drv.finish(2, latency_s=400.0))
        assert drv.step(pipe)  # the list's next goes out at once
        assert not drv.step(pipe)  # full: the re-selection starts, queued behind the gate
        assert pipe._sel_job is not None and not pipe._sel_job.done()
        pipe.observe(drv.finish(2, latency_s=400.0))
        assert drv.step(pipe)  # the oracle takes the spare before the selection ends
        gate.set()
        _job(held)
        new: _Selection = _job(pipe._sel_job)
        assert new.prefix == [] and pipe.sent - new.sent == 1  # it assumed none went out
        dropped = pipe.discarded
        drv.step(pipe)
        assert pipe.discarded == dropped + 1  # its pending points are out of date: dropped
        assert pipe.ready is listed  # the list it was to replace stays
        assert not any(b in pipe.ready.batches for b in new.batches)
        sent = [d for p in drv.recorded for d in _designs(p)]
        assert len(sent) == len(set(sent))
    finally:
        gate.set()
        pipe.close()


@pytest.mark.parametrize("rescore", ["always", "never"])
def test_rescore_policy_holds_a_batch_stale_by_results(generator, rescore: str) -> None:
    """``always``: a batch screened before the latest results waits for a re-screening, which
    then goes out; ``never``: it goes out at once."""
    cfg, gen = generator(rescore=rescore)
    drv = _Driver(f"policy-{rescore}", total=40)
    _seeded(drv, 4)
    pipe = _pipeline(cfg, gen, drv)
    try:
        _first_list(drv, pipe)
        _settle(drv, pipe)  # fresh batches go out at once under any policy
        ready = pipe.ready
        assert ready is not None and ready.next is not None
        stale = ready.next
        pipe.observe(drv.finish(2, latency_s=5.0))
        if rescore == "never":
            assert drv.step(pipe) and drv.recorded[-1] is stale.plan
            return
        assert not drv.step(pipe)  # held, and a re-screening of one batch started
        assert drv.recorded[-1] is not stale.plan and pipe._sel_job is not None
        new: _Selection = _job(pipe._sel_job)
        assert new.prefix == [] and len(new.batches) == 1
        assert new.batches[0].finished == len(drv.completed)
        assert drv.step(pipe) and drv.recorded[-1] is new.batches[0].plan
        assert drv.recorded[-1] is not stale.plan
    finally:
        pipe.close()


def test_plain_prior_fills_the_slots_once_then_first_results_are_screened(generator) -> None:
    """Without results the pipeline selects the ``fill`` batches the sync loop would send, no
    more; at the first results the free slots get prior samples screened with a surrogate
    fitted on them (not a batch selected before them); the tilted population follows, tilted
    with that fit conditioned on the results since."""
    cfg, gen = generator(rescore="never")
    drv = _Driver("plain", total=40)
    pipe = _pipeline(cfg, gen, drv)
    try:
        assert not drv.step(pipe)
        _job(pipe._gen_job)
        assert not drv.step(pipe) and pipe.pool is not None and not pipe.pool.tilted
        _job(pipe._sel_job)
        assert drv.step(pipe) and drv.step(pipe)  # fill = 4 / 2 = 2 batches, space-filling
        assert not drv.step(pipe) and pipe._sel_job is None  # no third one without results
        assert [p.tilted for p in drv.recorded] == [False, False]
        drv.finish(2, latency_s=1.0)
        assert not drv.step(pipe)  # room: a batch screened with the first results is made first
        assert pipe._sel_job is not None and pipe._gen_job is None  # the population waits for it
        screened: _Selection = _job(pipe._sel_job)
        assert screened.rescored is not None and screened.rescored.kind == "refit"
        assert [b.finished for b in screened.batches] == [2, 2]
        assert not any(b.plan.tilted for b in screened.batches)
        assert drv.step(pipe) and drv.recorded[-1] is screened.batches[0].plan
        assert drv.recorded[-1].surrogate_state is not None  # screened, not space-filling
        drv.finish(2, latency_s=1.0)
        assert drv.step(pipe) and drv.recorded[-1] is screened.batches[1].plan  # fill first
        assert not drv.step(pipe)  # full: the tilted population starts, from the screening's fit
        assert pipe._gen_job is not None and pipe._gen_tilts and pipe._sel_job is None
        assert pipe.screened_plain == 2
        drv.finish(2, latency_s=1.0)  # room while the population runs: no third screened batch
        assert not drv.step(pipe) and pipe._sel_job is None
        pop, tilt = _job(pipe._gen_job)
        assert pop.tilted and pop.observations == 4
        assert tilt is not None and tilt.kind == "condition"  # that fit conditioned on 4 results
        for _ in range(6):  # the tilted pool: what goes out next comes from it
            if drv.step(pipe):
                break
            if pipe._sel_job is not None:
                _job(pipe._sel_job)
        assert drv.recorded[-1].tilted
    finally:
        pipe.close()
