"""Cheap evaluators end to end: a campaign with an expensive lab (the lab simulator over real
HTTP, the Bowl) and a cheap one (a second lab simulator over HTTP: the Bowl plus a smooth bias
and noise) on SQLite and Postgres. Both oracles' queries are logged, each design is evaluated
at most once per oracle, the main budget counts only the expensive queries, and once both have
results the expensive pick comes from the multi-task GP."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from oracles.labsim import LabSimulator
from optimizer.campaign.fidelity import child_name
from optimizer.campaign.service import run_campaign
from storage import Storage
from campaign_oracles import Bowl

pytestmark = pytest.mark.slow  # whole campaigns on Ray


class BiasedBowl(Bowl):
    """The Bowl plus `0.3 sin(2 x₀)` and Gaussian noise: a cheap, imperfect simulation."""

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": super().score(design)["y"] + 0.3 * float(np.sin(2.0 * design[0]))}


@pytest.fixture()
def cheap_lab() -> Iterator[LabSimulator]:
    sim = LabSimulator(BiasedBowl(seed=1, noise_std=0.05)).start()
    try:
        yield sim
    finally:
        sim.close()


def fidelity_sections(cheap_url: str, **cheap: Any) -> dict[str, Any]:
    """The ``[[oracles]]`` section of a test campaign over the cheap lab at ``cheap_url``."""
    entry = {"name": "sim", "cost": 0.05, "per_round": 6, "budget": 30, "wait_s": 60.0,
             "oracle": {"kind": "http", "base_url": cheap_url, "timeout_s": 10.0}, **cheap}
    return {"oracles": [entry]}


def test_cheap_and_expensive_oracles_both_logged_exactly_once(
        ray_session: str, tiny_prior_path: str, lab, cheap_lab, db_url: str, make_config) -> None:
    name = "mf"
    cfg = make_config(name, tiny_prior_path, lab.url, db_url, ray={"address": ray_session},
                      budget={"q": 3, "max_in_flight": 3, "total": 12, "poll_interval_s": 0.05},
                      **fidelity_sections(cheap_lab.url))
    lines: list[str] = []
    status = run_campaign(cfg, progress=lines.append)
    assert status.status == "completed" and status.results == 12, status
    child = child_name(name, "sim")
    with Storage.open(db_url) as st:
        main_counts, cheap_counts = st.query_counts(name), st.query_counts(child)
        main_keys = {q.key for q in st.list_queries(name, statuses=("succeeded",))}
        cheap_keys = {q.key for q in st.list_queries(child, statuses=("succeeded",))}
        rounds = st.list_rounds(name)
        cheap_rounds = st.list_rounds(child)
        assert st.load_campaign(child).status == "paused"  # no driver of its own picks it up
    # the main budget counts only expensive queries; the cheap oracle's own budget is kept
    assert sum(main_counts.values()) == 12 and main_counts["succeeded"] == 12
    assert sum(cheap_counts.values()) == cheap_counts["succeeded"] == 24  # 4 rounds x 6
    assert [r.index for r in cheap_rounds] == [r.index for r in rounds] == [0, 1, 2, 3]
    # keys differ per oracle; each lab evaluated exactly the keys stored as its results, once
    assert all(k.startswith(f"{child}:") for k in cheap_keys) and not main_keys & cheap_keys
    assert set(lab.store.evaluations) == main_keys and max(lab.store.evaluations.values()) == 1
    assert set(cheap_lab.store.evaluations) == cheap_keys
    assert max(cheap_lab.store.evaluations.values()) == 1
    # round 0: space-filling; once both oracles have results the multi-task GP picks
    picks = [(r.summary or {}).get("fidelity", {}).get("expensive_pick") for r in rounds]
    assert picks[0].startswith("campaign screening") and picks[-1] == "multi-task qLogNEI", picks
    corr = (rounds[-1].summary or {})["fidelity"]["task_correlation"]
    assert corr["main"] == pytest.approx(1.0) and -1.0 <= corr["sim"] <= 1.0
    # operators see per-oracle counts and spend, and the logs name the oracle
    oracles = status.extra["oracles"]
    assert oracles["main"]["queries"] == 12 and oracles["main"]["spend"] == 12.0
    assert oracles["sim"]["queries"] == 24 and oracles["sim"]["spend"] == pytest.approx(24 * 0.05)
    assert "oracle sim: 24 queries/30 x cost 0.05 = spend 1.2" in status.line()
    assert any(ln.startswith("oracle sim: round 1:") for ln in lines), lines


def test_cheap_budget_stops_cheap_queries_only(ray_session: str, tiny_prior_path: str, lab,
                                               cheap_lab, tmp_path, make_config) -> None:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    cfg = make_config("mfb", tiny_prior_path, lab.url, url, ray={"address": ray_session},
                      budget={"q": 3, "max_in_flight": 3, "total": 9, "poll_interval_s": 0.05},
                      **fidelity_sections(cheap_lab.url, per_round=4, budget=6))
    status = run_campaign(cfg)
    assert status.status == "completed" and status.results == 9
    with Storage.open(url) as st:
        per_round = [len(r.query_keys) for r in st.list_rounds(child_name("mfb", "sim"))]
    assert per_round == [4, 2]  # round 2 found the cheap budget spent: no cheap round
    assert len(cheap_lab.store.evaluations) == 6
    # deleting the campaign deletes its cheap oracle's log campaign too
    from optimizer.campaign.operations import delete

    with Storage.open(url) as st:
        counts = delete(st, "mfb")
        assert counts["campaign"] == 2 and {c.name for c in st.list_campaigns()} == set()


def test_failing_cheap_oracle_pauses_the_campaign_naming_it(
        ray_session: str, tiny_prior_path: str, lab, db_url: str, make_config) -> None:
    from oracles.labsim.faults import FaultPlan

    broken = LabSimulator(BiasedBowl(seed=1), faults=FaultPlan(rates={"nan": 1.0})).start()
    try:
        cfg = make_config("mfbad", tiny_prior_path, lab.url, db_url, ray={"address": ray_session},
                          budget={"q": 3, "max_in_flight": 3, "total": 12, "poll_interval_s": 0.05,
                                  "max_consecutive_failures": 3},
                          **fidelity_sections(broken.url))
        status = run_campaign(cfg)
    finally:
        broken.close()
    assert status.status == "paused", status
    with Storage.open(db_url) as st:
        paused = [e for e in st.list_events("mfbad") if e.kind == "campaign.paused"]
        assert st.list_rounds("mfbad") == []  # the [oracle] pick was never recorded
        assert st.query_counts(child_name("mfbad", "sim"))["failed"] >= 3
    assert paused and paused[-1].payload["reason"].startswith("cheap oracle sim (campaign mfbad.sim)")
    assert not lab.store.evaluations  # nothing sent to the expensive lab


def test_pause_during_the_cheap_wait_records_no_expensive_batch(
        ray_session: str, tiny_prior_path: str, lab, db_url: str, make_config) -> None:
    import threading
    import time

    from optimizer.campaign import operations

    slow = LabSimulator(BiasedBowl(seed=1, latency_s=30.0)).start()
    child = child_name("mfstop", "sim")
    done = threading.Event()

    def pause_once_sent() -> None:  # from "another shell": once the cheap queries are out
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            try:  # the database, or the child, may not exist yet
                with Storage.open(db_url) as st:
                    counts = st.query_counts(child)
                    if counts["dispatched"] + counts["running"]:
                        operations.pause(st, "mfstop", reason="test")
                        return
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)

    pauser = threading.Thread(target=pause_once_sent)
    try:
        cfg = make_config("mfstop", tiny_prior_path, lab.url, db_url, ray={"address": ray_session},
                          budget={"q": 3, "max_in_flight": 3, "total": 12, "poll_interval_s": 0.05},
                          **fidelity_sections(slow.url, wait_s=300.0))
        pauser.start()
        status = run_campaign(cfg)
    finally:
        done.set()
        pauser.join(timeout=10)
        slow.close()
    assert status.status == "paused", status
    with Storage.open(db_url) as st:
        assert st.list_rounds("mfstop") == []  # the [oracle] pick was not recorded
        assert [r.index for r in st.list_rounds(child)] == [0]  # the cheap round is kept
        assert st.in_flight_count(child) == 6  # still at the lab: re-polled on resume
    assert not lab.store.evaluations
