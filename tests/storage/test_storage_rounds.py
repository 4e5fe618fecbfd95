"""Rounds: round + every candidate + outbox queries in one transaction, exact round trip,
idempotent re-write, conflicts, discarding an abandoned round."""
from __future__ import annotations

import re

import numpy as np
import pytest
import sqlalchemy as sa

from storage import InvalidValue, NewCandidate, NotFound, RoundConflict, Storage
from storage_helpers import make_candidates, setup_round


def test_round_round_trip(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    cands = make_candidates(10)
    cands[2] = NewCandidate(design=np.arange(6, dtype=np.int16).reshape(2, 3))  # any shape/dtype
    rec = storage.record_round(
        "c1", 0, alpha=0.05, candidates=cands, selected=[7, 2], oracle_name="lab",
        surrogate_state={"kind": "gp", "n": 8}, surrogate_blob=b"\x00safetensors-bytes",
        timings={"smc_s": 1.5}, summary={"ess": 3.2},
    )
    assert rec.selected == (2, 7) and rec.query_keys == ("c1:0:2", "c1:0:7")
    assert rec.num_candidates == 10 and rec.status == "open"
    loaded = storage.list_candidates("c1", 0)
    assert [c.index for c in loaded] == list(range(10))
    for given, got in zip(cands, loaded):
        np.testing.assert_array_equal(got.design, np.asarray(given.design))
        assert got.design.dtype == np.asarray(given.design).dtype
        assert got.log_weight == given.log_weight and got.group == given.group
        assert got.particle == given.particle and got.acquisition == given.acquisition
        assert got.surrogate_std == given.surrogate_std
        if given.features is not None:
            np.testing.assert_array_equal(got.features, given.features)
    assert [c.query_key for c in loaded if c.selected] == ["c1:0:2", "c1:0:7"]
    assert sum(c.selected for c in loaded) == 2
    full = storage.load_round("c1", 0)
    assert full.surrogate_blob == b"\x00safetensors-bytes"
    assert full.surrogate_state == {"kind": "gp", "n": 8} and full.summary == {"ess": 3.2}
    queries = storage.list_queries("c1")
    assert [(q.key, q.status, q.attempts, q.oracle_name) for q in queries] == [
        ("c1:0:2", "pending", 0, "lab"), ("c1:0:7", "pending", 0, "lab")]
    done = storage.update_round("c1", 0, status="complete", summary={"best": 1.0})
    assert done.status == "complete" and done.summary == {"best": 1.0}


def test_identical_rewrite_is_a_no_op_and_different_content_conflicts(storage: Storage) -> None:
    first = setup_round(storage)
    again = storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(8),
                                 selected=[1, 3, 5], oracle_name="lab")
    assert list(again.query_keys) == first
    assert len(storage.list_candidates("c1", 0)) == 8  # nothing written twice
    assert len(storage.list_events("c1", kind="round.recorded")) == 1
    with pytest.raises(RoundConflict) as info:
        storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(8, seed=1),
                             selected=[1, 3, 5], oracle_name="lab")
    assert str(info.value) == (
        "round 0 of campaign 'c1' is already recorded with different content; record the next "
        "index, or discard_round('c1', 0) first (only possible while none of its queries was "
        "dispatched)")


def test_discard_abandoned_round(storage: Storage) -> None:
    setup_round(storage, index=0)
    setup_round(storage, index=1)
    assert storage.discard_round("c1", 1, reason="driver restarted") == 8
    assert [r.index for r in storage.list_rounds("c1")] == [0]
    assert [q.key for q in storage.list_queries("c1")] == ["c1:0:1", "c1:0:3", "c1:0:5"]
    assert storage.list_events("c1", kind="round.discarded")[0].payload == {
        "round": 1, "candidates": 8, "reason": "driver restarted"}
    with pytest.raises(NotFound, match="round 1 of campaign 'c1' does not exist"):
        storage.list_candidates("c1", 1)
    # the index is free again, with different content
    storage.record_round("c1", 1, alpha=0.2, candidates=make_candidates(4), selected=[0],
                         oracle_name="lab")


def test_discard_refused_once_a_query_left_pending(storage: Storage) -> None:
    keys = setup_round(storage)
    assert storage.transition_query(keys[1], expected="pending", new="dispatched")
    with pytest.raises(RoundConflict) as info:
        storage.discard_round("c1", 0, reason="x")
    assert str(info.value) == (
        "round 0 of campaign 'c1' cannot be discarded: queries c1:0:3 (dispatched) already left "
        "'pending' and may be at the oracle; cancel or complete them instead")
    assert len(storage.list_candidates("c1", 0)) == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": [NewCandidate(np.array([1.0, np.nan]))], "selected": [0]},
         "candidates[0].design: contains NaN or infinite values"),
        ({"candidates": [NewCandidate(np.array(["a"], dtype=object))], "selected": [0]},
         "candidates[0].design: dtype object is not numeric"),
        ({"selected": [8]}, "selected: indices must be unique and in [0, 8), got [8]"),
        ({"selected": [1, 1]}, "selected: indices must be unique"),
        ({"alpha": 0.0}, "alpha: must be > 0"),
        ({"alpha": float("inf")}, "alpha: must be finite"),
        ({"oracle_name": None}, "oracle_name: required when candidates are selected"),
        ({"summary": {"ess": float("nan")}}, "summary: not storable as strict JSON"),
        ({"candidates": [], "selected": []}, "round 0 of campaign 'c1': candidates is empty"),
        ({"candidates": [NewCandidate(np.zeros(2), group=1.5)], "selected": [0]},
         "candidates[0].group: expected an integer, got float 1.5"),
    ],
)
def test_bad_round_input_writes_nothing(storage: Storage, kwargs: dict, message: str) -> None:
    storage.create_campaign("c1", {})
    args = {"alpha": 0.1, "candidates": make_candidates(8), "selected": [1],
            "oracle_name": "lab", **kwargs}
    with pytest.raises(InvalidValue, match=re.escape(message)):
        storage.record_round("c1", 0, **args)
    assert storage.list_rounds("c1") == []
    assert storage.list_queries("c1") == []


def test_two_writers_of_the_same_round_at_once(storage: Storage) -> None:
    # Two drivers resuming the same campaign: identical content → one round, both get its keys;
    # on Postgres the loser hits the unique constraint and is answered from the stored round.
    from concurrent.futures import ThreadPoolExecutor

    storage.create_campaign("c1", {})

    def write(seed: int):  # type: ignore[no-untyped-def]
        try:
            return storage.record_round(
                "c1", 0, alpha=0.1, candidates=make_candidates(200, seed=seed), selected=[1, 2],
                oracle_name="lab").query_keys
        except RoundConflict as exc:
            return str(exc)

    with ThreadPoolExecutor(2) as pool:
        same = list(pool.map(write, [0, 0]))
    assert same == [("c1:0:1", "c1:0:2")] * 2
    assert len(storage.list_candidates("c1", 0)) == 200
    storage.create_campaign("c2", {})
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: write_other(storage, s), [0, 1]))
    assert sorted(type(r).__name__ for r in results) == ["str", "tuple"]
    assert len(storage.list_candidates("c2", 0)) == 200


def write_other(storage: Storage, seed: int):  # type: ignore[no-untyped-def]
    try:
        return storage.record_round(
            "c2", 0, alpha=0.1, candidates=make_candidates(200, seed=seed), selected=[1],
            oracle_name="lab").query_keys
    except RoundConflict as exc:
        assert "round 0 of campaign 'c2' is already recorded with different content" in str(exc)
        return str(exc)


def test_list_rounds_costs_the_same_statements_for_one_round_or_many(storage: Storage) -> None:
    # The driver lists rounds several times per pass: one query per round (N+1) makes a long
    # campaign's every pass slower (Optuna's failure at 80,000 trials).
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    setup_round(storage, index=0)
    sa.event.listen(storage.engine, "before_cursor_execute", count)
    try:
        one = storage.list_rounds("c1")
        few = len(statements)
        for index in range(1, 6):
            storage.record_round("c1", index, alpha=0.1, candidates=make_candidates(4 + index),
                                 selected=[index % 3], oracle_name="lab")
        statements.clear()
        many = storage.list_rounds("c1")
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", count)
    assert len(statements) == few
    assert (many[0].query_keys, many[0].num_candidates) == (one[0].query_keys, 8)
    assert [r.num_candidates for r in many] == [8, 5, 6, 7, 8, 9]
    assert [r.selected for r in many] == [(1, 3, 5), (1,), (2,), (0,), (1,), (2,)]
    assert [r.query_keys for r in many][1:] == [(f"c1:{i}:{i % 3}",) for i in range(1, 6)]
    assert all(r.surrogate_blob is None for r in many)


def test_numpy_lineage_is_stored_as_integers(storage: Storage) -> None:
    # SMC lineage often arrives as numpy integers; sqlite3 stored those as raw 8-byte BLOBs
    storage.create_campaign("c1", {})
    cands = [NewCandidate(np.zeros(2), group=np.int64(3), particle=np.int32(7))]
    storage.record_round("c1", 0, alpha=0.1, candidates=cands)
    [got] = storage.list_candidates("c1", 0)
    assert (got.group, got.particle) == (3, 7) and type(got.group) is int
    # the same round with Python ints is the same content: an identical re-write
    same = [NewCandidate(np.zeros(2), group=3, particle=7)]
    assert storage.record_round("c1", 0, alpha=0.1, candidates=same).num_candidates == 1
