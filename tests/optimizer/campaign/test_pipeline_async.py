"""``[pipeline] mode = "async"``: rounds generated and screened on background threads while the
driver polls, against the lab simulator over real HTTP with a real Ray pool, on SQLite and
Postgres. Exactly-once holds (one lab evaluation per sent key, no design sent twice), several
batches come from one population, and results are stored while a population is generated."""
from __future__ import annotations

import concurrent.futures as cf
from datetime import datetime, timezone

import numpy as np
import pytest

from campaign_oracles import Bowl
from optimizer.campaign.pipeline import AsyncRounds, _Batch, _Ready, split_plan
from optimizer.campaign.rounds import Population, RoundPlan
from optimizer.campaign.service import run_campaign
from oracles.labsim import LabSimulator
from storage import NewCandidate, Storage



def _sent_designs(st: Storage, name: str) -> list[tuple[float, ...]]:
    return [tuple(np.round(np.asarray(q.design, dtype=float).ravel(), 12))
            for q in (*st.load_history(name).completed, *st.load_history(name).failed)]


@pytest.mark.slow  # a whole campaign on Ray
def test_async_campaign_exactly_once_and_pools_reused(ray_session: str, tiny_prior_path: str,
                                                      db_url: str, make_config) -> None:
    lab = LabSimulator(Bowl(seed=0, latency_s=0.4)).start()
    try:
        name = "async-e2e"
        cfg = make_config(name, tiny_prior_path, lab.url, db_url,
                          budget={"q": 4, "max_in_flight": 8, "total": 24, "poll_interval_s": 0.05},
                          pipeline={"mode": "async", "regenerate_every": 8, "rescore": "always"})
        lines: list[str] = []
        status = run_campaign(cfg, progress=lines.append)
        assert status.status == "completed" and status.results == 24 and status.in_flight == 0
        with Storage.open(db_url) as st:
            rounds = st.list_rounds(name)
            assert len(rounds) == 6 and all(r.status == "complete" for r in rounds)
            keys: set[str] = set()
            for r in rounds:
                cands = st.list_candidates(name, r.index)
                selected = [c for c in cands if c.selected]
                assert len(selected) == 4 and all(c.query_key for c in selected)
                keys.update(c.query_key for c in selected)  # type: ignore[misc]
            # a population serves several batches: a later round's candidates are its unused rest
            by_pop: dict[tuple[float, ...], list[dict]] = {}
            for r in rounds:
                pop = (r.summary or {})["population"]
                by_pop.setdefault(tuple(pop["generated"]), []).append(pop)
            shared = [pops for pops in by_pop.values() if len(pops) > 1]
            assert shared, by_pop
            for pops in shared:
                available = [p["available"] for p in pops]
                assert available == sorted(available, reverse=True) and available[-1] < pops[0]["size"]
                assert available[0] - available[-1] >= 4 * (len(pops) - 1)  # sent ones not offered again
            designs = _sent_designs(st, name)
            assert len(designs) == 24 and len(set(designs)) == 24  # no design sent twice
            # every tilted batch after the first results was screened with the surrogate
            assert all((r.summary or {}).get("observations", 0) >= 0 for r in rounds)
        assert set(lab.store.evaluations) == keys and max(lab.store.evaluations.values()) == 1
        assert any("population" in ln for ln in lines)
    finally:
        lab.close()


@pytest.mark.slow  # a whole campaign on Ray
def test_results_are_stored_while_a_population_is_generated(ray_session: str, tiny_prior_path: str,
                                                            tmp_path, make_config) -> None:
    """A slow SMC and a fast lab: in async mode results are polled and stored while
    a population is generated — its surrogate fit and SMC (in sync mode no result can be stored
    inside that window: the driver's one thread is generating)."""
    lab = LabSimulator(Bowl(seed=1, latency_s=0.1)).start()
    url = f"sqlite:///{tmp_path / 'overlap.db'}"
    try:
        name = "overlap"
        cfg = make_config(name, tiny_prior_path, lab.url, url,
                          sampler={"alpha": 0.5, "num_steps": 40},
                          # 8 candidates per population: the pool runs out, so later batches
                          # wait for a generation while earlier ones are still at the lab
                          workers={"particles_per_worker": 4},
                          budget={"q": 2, "max_in_flight": 4, "total": 16, "poll_interval_s": 0.02},
                          pipeline={"mode": "async", "regenerate_every": 2, "rescore": "never"})
        status = run_campaign(cfg)
        assert status.results == 16
        with Storage.open(url) as st:
            finished = [_unix(q.finished_at) for q in st.load_history(name).completed
                        if q.finished_at is not None]
            windows = {tuple((r.summary or {})["population"]["generated"]) for r in st.list_rounds(name)}
        inside = [f for f in finished if any(a < f < b for a, b in windows)]
        assert len(windows) >= 2 and inside, (windows, finished)
        assert max(lab.store.evaluations.values()) == 1
    finally:
        lab.close()


def _unix(t: datetime) -> float:
    """Seconds since the epoch (SQLite returns naive UTC datetimes)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).timestamp()


def _plan(selected: list[int], candidates: int, index: int = 3) -> RoundPlan:
    cands = [NewCandidate(design=np.array([float(i), 0.0]), group=0, particle=i)
             for i in range(candidates)]
    return RoundPlan(index=index, alpha=0.5, tilted=True, candidates=cands, selected=selected,
                     surrogate_state=None, surrogate_blob=None, timings={"screen_s": 1.0},
                     summary={"population": {"round": 1, "size": candidates, "available": candidates}},
                     population_rows=np.asarray(selected) + 100)


def _ready(selected: int, *, sent: int, finished: int, started: float = 0.0) -> _Ready:
    return _Ready(batches=[_Batch(plan=_plan(list(range(selected)), 10), population=1,
                                  finished=finished, started=started)], sent=sent)


def test_split_plan_cuts_greedy_batches_into_rounds() -> None:
    """Batches selected together go out as consecutive rounds; each round's candidates are the
    ones not sent by the rounds before it, and its selection points at the same designs."""
    plan = _plan([7, 2, 5, 0, 9, 4], candidates=10)
    parts = split_plan(plan, 2)
    assert [p.index for p in parts] == [3, 4, 5]
    sent: list[float] = []
    for p in parts:
        designs = [float(c.design[0]) for c in p.candidates]
        assert not set(designs) & set(sent)  # what went out before is not offered again
        assert p.summary["population"]["available"] == len(p.candidates)
        sent += [designs[i] for i in p.selected]
    assert sent == [7.0, 2.0, 5.0, 0.0, 9.0, 4.0]  # greedy order kept
    assert [list(np.asarray(p.population_rows)) for p in parts] == [[107, 102], [105, 100], [109, 104]]
    assert parts[0].timings == {"screen_s": 1.0} and parts[1].timings == {"screen_s": 0.0}


@pytest.mark.parametrize(("rescore", "seconds", "latency", "usable"), [
    ("never", 9.0, 1.0, True),      # never waits for a refit
    ("always", 0.001, 100.0, False),  # always waits
    ("auto", 0.5, 100.0, False),    # cheap next to the lab: wait for the refit
    ("auto", 0.5, 5.0, True),       # 10 % of a 5-s lab: send the batch at once
    ("auto", 0.05, 5.0, False),     # 1 % of a 5-s lab (default rescore_fraction 2 %): wait
])
def test_rescore_policy_decides_on_a_batch_stale_by_results(rescore: str, seconds: float,
                                                             latency: float, usable: bool,
                                                             tiny_prior_path: str, make_config,
                                                             tmp_path) -> None:
    cfg = make_config("policy", tiny_prior_path, "http://127.0.0.1:9", f"sqlite:///{tmp_path}/p.db",
                      pipeline={"mode": "async", "rescore": rescore})
    pipe = AsyncRounds(cfg, generator=lambda: None,  # type: ignore[arg-type,return-value]
                       read_inputs=lambda: None, record=lambda p: None,  # type: ignore[arg-type,return-value]
                       say=lambda m: None)
    try:
        pipe.latencies.extend([latency] * 3)
        pipe.ready = _ready(4, sent=0, finished=4)
        if rescore == "auto":  # nothing known of a refit's cost yet: never wait for one
            assert pipe._usable(4, finished=8) is pipe.ready
        pipe.rescore_seconds.append(seconds)
        assert pipe._usable(4, finished=4) is pipe.ready  # fresh: always usable
        assert (pipe._usable(4, finished=8) is not None) is usable  # 4 results arrived since
        pipe.sent = 1  # a batch went out since it was selected: never usable (pending changed)
        assert pipe._usable(4, finished=4) is None
        pipe.sent = 0
        assert pipe._usable(2, finished=4) is None  # the budget's last, smaller batch: reselect
    finally:
        pipe.close()


def test_auto_rescore_judges_the_typical_re_screening_and_a_fresh_one_fills_the_free_slots(
        tiny_prior_path: str, make_config, tmp_path) -> None:
    """``auto`` compares the median recent re-screening with the latency (one slow one, a refit,
    does not stop the waiting), and a re-screening the oracle waits for holds a batch per free
    ``q`` slots (one selection per burst of results, not one per batch)."""
    cfg = make_config("policy-median", tiny_prior_path, "http://127.0.0.1:9",
                      f"sqlite:///{tmp_path}/p.db", pipeline={"mode": "async", "rescore": "auto"},
                      budget={"q": 4, "max_in_flight": 8, "total": 40})
    pipe = AsyncRounds(cfg, generator=lambda: None,  # type: ignore[arg-type,return-value]
                       read_inputs=lambda: None, record=lambda p: None,  # type: ignore[arg-type,return-value]
                       say=lambda m: None)
    try:
        pipe.latencies.extend([5.0] * 3)
        pipe.rescore_seconds.extend([0.05, 3.0, 0.08])  # a refit among cheap conditionings
        assert pipe._wait_for_fresh()
        pipe.rescore_seconds.append(2.0)  # now most recent ones are slow: send at once
        assert not pipe._wait_for_fresh()
        assert [pipe._fresh_batches(4, n) for n in (0, 3, 4, 7, 8)] == [2, 1, 1, 1, 1]
    finally:
        pipe.close()


def _population(tilted: bool, size: int = 16) -> Population:
    z = np.zeros(size)
    return Population(index=0, alpha=0.5, tilted=tilted, designs=np.zeros((size, 2)),
                      features=np.zeros((size, 2)), log_weights=z, group=z.astype(int),
                      particle=np.arange(size), family=np.arange(size), fit=None, sampler={},
                      unique_ancestors=size, timings={"fit_s": 0.0, "smc_s": 0.0}, observations=0)


def test_no_batch_from_a_plain_prior_pool_while_a_tilted_population_is_generated(
        tiny_prior_path: str, make_config, tmp_path) -> None:
    """Once results exist, prior samples are not screened into batches while the population
    that the results tilt is on its way (the oracle waits for it, as the sync loop does)."""
    cfg = make_config("tilt-wait", tiny_prior_path, "http://127.0.0.1:9", f"sqlite:///{tmp_path}/t.db",
                      pipeline={"mode": "async"})
    pipe = AsyncRounds(cfg, generator=lambda: None,  # type: ignore[arg-type,return-value]
                       read_inputs=lambda: None, record=lambda p: None,  # type: ignore[arg-type,return-value]
                       say=lambda m: None)
    running: cf.Future[Population] = cf.Future()
    try:
        pipe.pool, pipe.used = _population(tilted=False), np.zeros(16, dtype=bool)
        pipe._gen_job, pipe._gen_tilts = running, True
        assert pipe._awaiting_tilt() and pipe._cause(finished=4) == "population"
        pipe._start_jobs(4, finished=4, remaining=20, in_flight=8)
        assert pipe._sel_job is None  # no selection from the prior samples
        pipe._gen_tilts = False  # a generation without results to tilt with: the pool serves
        assert not pipe._awaiting_tilt()
        pipe._gen_tilts = True
        pipe.pool = _population(tilted=True)  # a tilted pool always serves
        assert not pipe._awaiting_tilt()
    finally:
        pipe._gen_job = None
        pipe.close()
