"""The dashboard's data (:func:`campaign_bundle`): a live reader's delta by event cursor holds
exactly the queries and rounds that changed, and merged into the previous answer it equals a
fresh full answer; unique ancestors per round; the hypervolume of three objectives."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dashboard_helpers import create_campaign, finish, record_round
from optimizer.campaign.rounds import unique_ancestors
from optimizer.service.dashboard.data import campaign_bundle, hypervolume
from optimizer.workers.smc_worker import ChunkResult
from storage import NewCandidate, Storage


def merged(old: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """What page_campaign.js does with a delta, in Python: points by key, rounds by index."""
    assert delta["delta"] is True
    cols = ("key", "round", "status", "surrogate_mean", "surrogate_std")
    pts: dict[str, Any] = {c: list(old["points"][c]) for c in cols}
    pts["values"] = {o: list(v) for o, v in old["points"]["values"].items()}
    columns = [pts[c] for c in cols] + list(pts["values"].values())
    where = {k: i for i, k in enumerate(pts["key"])}
    d = delta["points"]
    for j, key in enumerate(d["key"]):
        i = where.setdefault(key, len(pts["key"]))
        if i == len(pts["key"]):  # a new query: every column grows by one
            for column in columns:
                column.append(None)
        for c in cols:
            pts[c][i] = d[c][j]
        for o, v in d["values"].items():
            pts["values"][o][i] = v[j]
    rounds = {r["index"]: r for r in old["rounds"]}
    rounds.update({r["index"]: r for r in delta["rounds"]})
    return {**delta, "delta": False, "points": pts,
            "rounds": [rounds[i] for i in sorted(rounds)]}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_delta_holds_what_changed_and_merges_into_a_fresh_answer(
        storage: Storage, make_config: Callable[..., dict[str, Any]]) -> None:
    create_campaign(storage, "vec", make_config("vec", budget={"total": 40}))
    record_round(storage, "vec", 0)
    queued = record_round(storage, "vec", 1, succeed=False)
    first = campaign_bundle(storage, "vec")
    assert first["delta"] is False and len(first["points"]["key"]) == 8
    assert first["points"]["status"][4:] == ["pending"] * 4
    # nothing happened: an empty delta, the same cursor
    same = campaign_bundle(storage, "vec", after=first["cursor"])
    assert same["delta"] is True and same["points"]["key"] == [] and same["rounds"] == []
    assert same["cursor"] == first["cursor"]

    finish(storage, queued[1], 42.0)  # a result for an old query
    record_round(storage, "vec", 2, seed=3)  # a new round with its results
    delta = campaign_bundle(storage, "vec", after=first["cursor"])
    assert delta["points"]["key"] == [queued[1], *(f"vec:2:{i}" for i in range(4))]
    assert delta["points"]["values"]["y"][0] == 42.0
    assert [r["index"] for r in delta["rounds"]] == [1, 2]
    assert delta["cursor"] > first["cursor"] and delta["campaign"]["best"] == 42.0
    fresh = campaign_bundle(storage, "vec")
    together = merged(first, delta)
    for k in ("points", "rounds", "top", "failures", "pareto", "gap_warning"):
        assert together[k] == fresh[k], k

    # a discarded round removes points: the full answer instead of a delta
    record_round(storage, "vec", 3, succeed=False)
    storage.discard_round("vec", 3, reason="test")
    full = campaign_bundle(storage, "vec", after=delta["cursor"])
    assert full["delta"] is False and len(full["points"]["key"]) == 12
    # a cursor from another database (ahead of this one's events): the full answer
    assert campaign_bundle(storage, "vec", after=full["cursor"] + 1000)["delta"] is False


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_unique_ancestors_counted_per_chunk_stored_and_served(
        storage: Storage, make_config: Callable[..., dict[str, Any]]) -> None:
    def chunk(c: int, origin: list[int]) -> ChunkResult:
        n = len(origin)
        return ChunkResult(round_index=0, chunk=c, samples=np.zeros((n, 2)), features=np.zeros((n, 2)),
                           log_weights=np.zeros(n), rewards=np.zeros(n), origin=np.array(origin),
                           ess=np.ones(3), lambdas=np.ones(3), resampled=np.zeros(3, bool),
                           log_normalizer=0.0, seconds=0.0, pid=0)

    # chunk 0 kept founders {0, 2}; chunk 1 kept {0, 1, 3}: founders are per chunk, so 2 + 3
    assert unique_ancestors([chunk(0, [0, 0, 2, 2]), chunk(1, [3, 1, 0, 0])]) == 5
    create_campaign(storage, "anc", make_config("anc", budget={"total": 40}))
    storage.record_round("anc", 0, alpha=1.0, candidates=[NewCandidate(np.zeros(2))])
    storage.record_round("anc", 1, alpha=1.0, candidates=[NewCandidate(np.ones(2))],
                         unique_ancestors=5)
    b = campaign_bundle(storage, "anc")
    assert [r["unique_ancestors"] for r in b["rounds"]] == [None, 5]


def test_three_objectives_get_a_front_and_a_hypervolume(
        storage: Storage, make_config: Callable[..., dict[str, Any]]) -> None:
    create_campaign(storage, "mo3", make_config("mo3", objectives=[
        {"name": "a", "direction": "maximize"}, {"name": "b", "direction": "maximize"},
        {"name": "c", "direction": "minimize"}]))
    results = [(2.0, 1.0, -1.0), (1.0, 2.0, -1.0), (1.0, 1.0, -2.0), (0.5, 0.5, -0.5)]
    rec = storage.record_round("mo3", 0, alpha=0.5, selected=[0, 1, 2, 3], oracle_name="pull",
                               candidates=[NewCandidate(np.zeros(2) + i) for i in range(4)])
    for key, (a, b_, c) in zip(rec.query_keys, results):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"a": a, "b": b_, "c": c})
    pr = campaign_bundle(storage, "mo3")["pareto"]
    assert pr["front"] == list(rec.query_keys[:3])
    hv = pr["hypervolume"]
    ref = np.array(hv["reference"]) * np.array([1, 1, -1])  # maximized
    # inferred (no `reference` configured): the front's nadir (1, 1, 1) less a tenth of its range
    assert ref == pytest.approx([0.9, 0.9, 0.9], abs=1e-9)
    # above (0.9, 0.9, 0.9) the three boxes are 1.1 x 0.1 x 0.1 etc.:
    # inclusion-exclusion 3 * 0.011 - 3 * 0.001 + 0.001 = 0.031
    assert hv["value"][-1] == pytest.approx(0.031, rel=1e-6)
    assert hv["value"][-1] == pytest.approx(hypervolume(
        np.array(results) * np.array([1, 1, -1]), ref))
    assert hv["value"] == sorted(hv["value"])  # never shrinks as queries come
