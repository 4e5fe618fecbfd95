"""load_history: completed pairs, in-flight keys and job ids, failures with reasons — in a fixed
number of statements however many queries there are; hot queries served by indexes."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event

from pg_schemas import postgres_schema_url
from storage import Storage, upgrade
from storage_helpers import make_candidates, setup_round


def _statements(storage: Storage, call):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            seen.append(statement)

    event.listen(storage.engine, "before_cursor_execute", count)
    try:
        return call(), seen
    finally:
        event.remove(storage.engine, "before_cursor_execute", count)


def test_history_splits_by_outcome(storage: Storage) -> None:
    keys = setup_round(storage, num=8, selected=(0, 1, 2, 3, 4, 5))
    designs = {c.query_key: c.design for c in storage.list_candidates("c1", 0) if c.selected}
    for k in keys[:4]:
        storage.transition_query(k, expected="pending", new="dispatched", job_id=f"job-{k}")
    storage.transition_query(keys[0], expected="dispatched", new="succeeded",
                             values={"y": 1.0, "z": -1.0}, noise={"y": 0.1})
    storage.transition_query(keys[1], expected="dispatched", new="succeeded", values={"y": 2.0, "z": 0.5})
    storage.transition_query(keys[2], expected="dispatched", new="failed", error="HTTP 500: boom")
    storage.transition_query(keys[4], expected="pending", new="cancelled", error="budget")
    history = storage.load_history("c1")
    assert [q.key for q in history.completed] == keys[:2]
    assert [(q.key, q.status, q.job_id) for q in history.in_flight] == [
        (keys[3], "dispatched", f"job-{keys[3]}"), (keys[5], "pending", None)]
    assert [(q.key, q.error) for q in history.failed] == [
        (keys[2], "HTTP 500: boom"), (keys[4], "budget")]
    np.testing.assert_array_equal(history.X(), np.stack([designs[k] for k in keys[:2]]))
    np.testing.assert_array_equal(history.Y(["z", "y"]), [[-1.0, 1.0], [0.5, 2.0]])
    assert history.completed[0].noise == {"y": 0.1}
    assert all(q.design is not None for q in history.in_flight + history.failed)


def test_history_without_designs_for_status_lines(storage: Storage) -> None:
    keys = setup_round(storage, num=8, selected=(0, 1, 2))
    storage.transition_query(keys[0], expected="pending", new="dispatched")
    storage.transition_query(keys[0], expected="dispatched", new="succeeded", values={"y": 3.0})
    light, statements = _statements(storage, lambda: storage.load_history("c1", with_design=False))
    assert [(q.key, q.values, q.design) for q in light.completed] == [(keys[0], {"y": 3.0}, None)]
    assert [q.key for q in light.in_flight] == keys[1:]
    assert all("design" not in s.split("FROM")[0] for s in statements)  # bytes never fetched
    np.testing.assert_array_equal(light.Y(["y"]), [[3.0]])
    with pytest.raises(ValueError, match="loaded without designs; call load_history"):
        light.X()


@pytest.mark.parametrize("rounds", [1, 4])
def test_history_statement_count_does_not_grow(storage: Storage, rounds: int) -> None:
    for r in range(rounds):
        setup_round(storage, num=12, selected=tuple(range(0, 12, 2)), index=r)
    history, statements = _statements(storage, lambda: storage.load_history("c1"))
    assert len(history.in_flight) == 6 * rounds
    assert len(statements) == 2  # campaign id lookup + one joined SELECT, for any size


def test_empty_history(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    history = storage.load_history("c1")
    assert history.X().shape == (0, 0) and history.Y(["y"]).shape == (0, 1)


def test_record_round_is_bulk(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    cands = make_candidates(300)
    _, statements = _statements(storage, lambda: storage.record_round(
        "c1", 0, alpha=0.1, candidates=cands, selected=list(range(0, 300, 3)), oracle_name="lab"))
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO CANDIDATE")]
    assert len(inserts) == 1  # one executemany (multi-row VALUES), not 300 round trips
    assert len(statements) < 20


def test_hot_queries_use_indexes_on_postgres(pg_schema: str) -> None:
    # With sequential scans disabled the planner must still find an index for each hot query;
    # a missing index shows up as "Seq Scan" (Optuna's 100%-CPU failure mode).
    url = postgres_schema_url(pg_schema, enable_seqscan="off")
    upgrade(url)
    with Storage.open(url) as storage:
        setup_round(storage, num=50, selected=tuple(range(50)))
        plans = storage.hot_query_plans("c1")
    assert "ix_oracle_query_campaign_id_status" in plans["load_history"]
    assert "pk_candidate" in plans["load_history"]
    assert "ix_oracle_query_campaign_id_status" in plans["claim_scan"]
    assert "uq_oracle_query_idempotency_key" in plans["transition"]
    for name, plan in plans.items():
        assert "Seq Scan on oracle_query" not in plan, (name, plan)
        assert "Seq Scan on candidate" not in plan, (name, plan)


def test_bulk_decode_keeps_every_design_and_value(storage: Storage) -> None:
    """Designs of several dtypes and shapes (a 0-d one too) in one history, and values with
    nulls, decode as written (the bulk path groups designs by dtype, shape and length)."""
    from storage import NewCandidate

    designs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.float64(2.5), np.arange(4),
               np.ones(3, dtype=np.float16), np.arange(6, dtype=np.float32).reshape(3, 2) + 1,
               np.arange(6, dtype=np.float32).reshape(2, 3) - 7]
    storage.create_campaign("mix", {})
    keys = storage.record_round("mix", 0, alpha=0.5, candidates=[NewCandidate(d) for d in designs],
                                selected=range(len(designs)), oracle_name="lab").query_keys
    for i, key in enumerate(keys[:4]):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": 1.0 / (i + 3), "z": -2.5e-7},
                                 noise={"y": 0.5} if i % 2 else None)
    history = storage.load_history("mix")
    got = [q.design for q in (*history.completed, *history.in_flight)]
    for want, have in zip(designs, got, strict=True):
        assert isinstance(have, np.ndarray) and have.dtype == np.asarray(want).dtype
        assert have.shape == np.asarray(want).shape and np.array_equal(have, want)
        assert have.flags.writeable
    assert [q.values for q in history.completed] == [{"y": 1.0 / (i + 3), "z": -2.5e-7}
                                                     for i in range(4)]
    assert [q.noise for q in history.completed] == [None, {"y": 0.5}, None, {"y": 0.5}]
    assert all(q.values is None and q.noise is None for q in history.in_flight)


def test_history_changes_reads_new_and_named_rows(storage: Storage) -> None:
    keys = setup_round(storage, num=6, selected=(0, 1, 2, 3))
    everything = storage.history_changes("c1", after_id=0)
    assert [r.key for _, r in everything] == keys and all(r.design is not None for _, r in everything)
    ids = [i for i, _ in everything]
    storage.transition_query(keys[1], expected="pending", new="cancelled", error="operator")
    changed = storage.history_changes("c1", after_id=ids[-1], ids=[ids[1], ids[2]])
    assert [(i, r.key, r.status) for i, r in changed] == [
        (ids[1], keys[1], "cancelled"), (ids[2], keys[2], "pending")]
    assert all(r.design is None for _, r in changed)  # a design never changes: not re-read
    assert storage.history_changes("c1", after_id=ids[-1]) == []
    assert storage.round_tally("c1") == (1, 0)
    assert [r.index for r in storage.list_rounds("c1", after_index=0)] == []
    assert [r.index for r in storage.list_rounds("c1", after_index=-1)] == [0]
    assert storage.round_states("c1", status="open") == [(0, "open")]
    assert storage.round_states("c1", status="complete") == []
