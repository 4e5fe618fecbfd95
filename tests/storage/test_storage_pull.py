"""Pull API: idempotent claims per client request, disjoint claims, expired leases back in the
pool, reports stored once, late reports accepted while nobody claimed the query since."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import func, select

from storage import InvalidValue, QueryRecord, Storage, WorkNotHeld
from storage.clock import db_now
from storage.models import OracleQuery
from storage_helpers import setup_round


def _wait_for_expiry(storage: Storage, keys: list[str], timeout: float = 3.0) -> None:
    """Poll the database clock until every lease of ``keys`` has expired."""
    deadline = time.monotonic() + timeout
    while True:
        with storage.session() as session:
            live = session.scalar(select(func.count()).select_from(OracleQuery).where(
                OracleQuery.idempotency_key.in_(keys), OracleQuery.lease_expires_at >= db_now()))
        if not live:
            return
        assert time.monotonic() < deadline, f"leases of {keys} still live after {timeout} s"
        time.sleep(0.05)


def test_claim_is_idempotent_per_client_request(storage: Storage) -> None:
    keys = setup_round(storage, num=8, selected=(1, 3, 5, 7))
    first = storage.claim_work("c1", "lab-1", "req-1", 2, 60.0)
    assert [q.key for q in first] == keys[:2]
    assert all(isinstance(q, QueryRecord) and q.design is not None for q in first)
    assert [(q.status, q.lease_owner, q.attempts) for q in first] == [("dispatched", "lab-1", 1)] * 2
    retry = storage.claim_work("c1", "lab-1", "req-1", 2, 60.0)
    assert [q.key for q in retry] == keys[:2]
    assert [q.attempts for q in retry] == [1, 1]  # not dispatched twice
    assert all(r.lease_expires_at >= f.lease_expires_at for r, f in zip(retry, first))  # renewed
    np.testing.assert_array_equal(retry[0].design, first[0].design)
    # a new request id of the same client, and another client, get the rest
    assert [q.key for q in storage.claim_work("c1", "lab-1", "req-2", 1, 60.0)] == [keys[2]]
    assert [q.key for q in storage.claim_work("c1", "lab-2", "req-1", 5, 60.0)] == [keys[3]]
    assert storage.claim_work("c1", "lab-3", "req-1", 5, 60.0) == []  # nothing left
    assert storage.query_counts("c1")["dispatched"] == 4
    moves = [(e.payload["key"], e.payload["to"], e.payload["client"])
             for e in storage.list_events("c1", kind="query.transition")]
    assert moves == [(keys[0], "dispatched", "lab-1"), (keys[1], "dispatched", "lab-1"),
                     (keys[2], "dispatched", "lab-1"), (keys[3], "dispatched", "lab-2")]


def test_empty_claim_is_not_remembered(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    assert storage.claim_work("c1", "lab-1", "req-1", 3, 60.0) == []
    keys = setup_round(storage)
    assert [q.key for q in storage.claim_work("c1", "lab-1", "req-1", 3, 60.0)] == keys


def test_driver_leases_and_driver_dispatches_are_not_handed_out(storage: Storage) -> None:
    keys = setup_round(storage, num=8, selected=(1, 3, 5))
    storage.claim_queries("c1", owner="driver", limit=1, lease_seconds=60)  # keys[0], pending
    assert storage.transition_query(keys[1], expected="pending", new="dispatched")
    assert [q.key for q in storage.claim_work("c1", "lab-1", "r", 5, 60.0)] == [keys[2]]


def test_expired_pull_leases_return_to_the_pool(storage: Storage) -> None:
    keys = setup_round(storage)
    assert [q.key for q in storage.claim_work("c1", "lab-1", "r1", 2, 1.0)] == keys[:2]
    assert storage.claim_work("c1", "lab-2", "r1", 5, 60.0)[0].key == keys[2]
    _wait_for_expiry(storage, keys[:2])
    again = storage.claim_work("c1", "lab-2", "r2", 5, 60.0)
    assert [q.key for q in again] == keys[:2]
    assert [(q.status, q.lease_owner, q.attempts) for q in again] == [("dispatched", "lab-2", 2)] * 2
    # lab-1's retry of its old request returns its items in their current state: taken over
    retry = storage.claim_work("c1", "lab-1", "r1", 2, 60.0)
    assert [(q.key, q.lease_owner) for q in retry] == [(keys[0], "lab-2"), (keys[1], "lab-2")]
    moves = [(e.payload["from"], e.payload["to"]) for e in storage.list_events("c1")
             if e.kind == "query.transition" and e.payload["key"] == keys[0]]
    assert moves == [("pending", "dispatched"), ("dispatched", "pending"), ("pending", "dispatched")]


def test_report_is_stored_once(storage: Storage) -> None:
    keys = setup_round(storage)
    storage.claim_work("c1", "lab-1", "r1", 3, 60.0)
    assert storage.report_work(keys[0], "lab-1", values={"y": 0.5}, noise={"y": 0.01})
    assert not storage.report_work(keys[0], "lab-1", values={"y": 0.5}, noise={"y": 0.01})
    with pytest.raises(WorkNotHeld, match=rf"query '{keys[0]}' is already succeeded with another "
                                          r"result; a result is stored once"):
        storage.report_work(keys[0], "lab-1", values={"y": 0.7})
    with pytest.raises(WorkNotHeld, match="held by another client"):
        storage.report_work(keys[0], "lab-2", values={"y": 0.5})
    assert storage.report_work(keys[1], "lab-1", error="instrument jammed")
    assert not storage.report_work(keys[1], "lab-1", error="instrument jammed")
    q0, q1 = storage.get_query(keys[0]), storage.get_query(keys[1])
    assert (q0.status, q0.values, q0.noise, q0.lease_owner) == ("succeeded", {"y": 0.5},
                                                                {"y": 0.01}, None)
    assert (q1.status, q1.error) == ("failed", "instrument jammed")
    history = storage.load_history("c1")
    assert [q.key for q in history.completed] == [keys[0]]
    assert [q.key for q in history.failed] == [keys[1]]


def test_late_report_accepted_unless_claimed_since(storage: Storage) -> None:
    keys = setup_round(storage)
    storage.claim_work("c1", "lab-1", "r1", 3, 0.3)
    _wait_for_expiry(storage, keys)
    assert storage.report_work(keys[0], "lab-1", values={"y": 1.0})  # late, nobody took it
    taken = storage.claim_work("c1", "lab-2", "r1", 1, 60.0)
    assert [q.key for q in taken] == [keys[1]]
    with pytest.raises(WorkNotHeld, match=rf"query '{keys[1]}' is held by another client since "
                                          r"your lease expired; your result was not stored"):
        storage.report_work(keys[1], "lab-1", values={"y": 2.0})
    assert storage.report_work(keys[1], "lab-2", values={"y": 3.0})
    assert storage.get_query(keys[1]).values == {"y": 3.0}


def test_report_errors(storage: Storage) -> None:
    keys = setup_round(storage)
    with pytest.raises(WorkNotHeld, match="was not claimed through the pull API"):
        storage.report_work(keys[0], "lab-1", values={"y": 1.0})
    storage.claim_work("c1", "lab-1", "r1", 1, 60.0)
    with pytest.raises(InvalidValue, match="report either values .* or error"):
        storage.report_work(keys[0], "lab-1", values={"y": 1.0}, error="x")
    with pytest.raises(InvalidValue, match="is not finite"):
        storage.report_work(keys[0], "lab-1", values={"y": float("nan")})
    with pytest.raises(InvalidValue, match="max_items: expected an integer from 1 to 1000"):
        storage.claim_work("c1", "lab-1", "r2", 0, 60.0)
    with pytest.raises(InvalidValue, match="lease_s: expected seconds > 0"):
        storage.claim_work("c1", "lab-1", "r2", 1, -1)
    with pytest.raises(InvalidValue, match=r"lease_s: expected seconds > 0 and <= 2592000"):
        storage.claim_work("c1", "lab-1", "r2", 1, 31 * 86_400)
    assert storage.get_query(keys[0]).status == "dispatched"


@pytest.mark.timeout(120)
def test_racing_clients_never_get_the_same_query(storage_url: str) -> None:
    with Storage.open(storage_url) as storage:
        keys = setup_round(storage, num=40, selected=tuple(range(30)))
    parties = 3
    stores = [Storage.open(storage_url, actor=f"lab-{i}") for i in range(parties)]
    barrier = threading.Barrier(parties, timeout=30)

    def pull(i: int) -> list[str]:
        barrier.wait()
        got: list[str] = []
        for r in range(20):
            got += [q.key for q in stores[i].claim_work("c1", f"lab-{i}", f"r{r}", 2, 60.0)]
        return got

    try:
        with ThreadPoolExecutor(parties) as pool:
            claimed = list(pool.map(pull, range(parties)))
    finally:
        for s in stores:
            s.close()
    everything = [k for got in claimed for k in got]
    assert sorted(everything) == sorted(keys) and len(set(everything)) == len(keys)


def test_work_of_lists_a_clients_claimed_and_reported_queries(storage: Storage) -> None:
    store = storage
    keys = setup_round(storage, num=3, selected=(0, 1, 2))
    mine = [q.key for q in store.claim_work("c1", "lab-a", "r1", 2, 60.0)]
    store.claim_work("c1", "lab-b", "r2", 1, 60.0)
    store.report_work(mine[0], "lab-a", values={"y": 1.0})
    assert [q.key for q in store.work_of("c1", "lab-a")] == mine
    held = store.work_of("c1", "lab-a", statuses=("dispatched",), with_design=True)
    assert [q.key for q in held] == mine[1:] and held[0].design is not None
    assert [q.key for q in store.work_of("c1", "lab-b")] == [k for k in keys if k not in mine]


def test_event_cursor_reads_only_newer_events(storage: Storage) -> None:
    store = storage
    setup_round(storage)
    cursor = store.last_event_id("c1")
    assert cursor > 0
    store.log_event("c1", "note", {"n": 1})
    newer = store.list_events("c1", after_id=cursor)
    assert [e.kind for e in newer] == ["note"] and store.last_event_id("c1") == newer[0].id
