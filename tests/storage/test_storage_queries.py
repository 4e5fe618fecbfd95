"""Oracle queries: lifecycle, conditional transitions (a stale writer loses), job ids, leases."""
from __future__ import annotations

import re
import time

import pytest

from storage import InvalidTransition, InvalidValue, JobIdConflict, NotFound, Storage
from storage_helpers import setup_round


def test_lifecycle_and_result_written_once(storage: Storage) -> None:
    key = setup_round(storage)[0]
    assert storage.transition_query(key, expected="pending", new="dispatched")
    storage.record_job_id(key, "job-17")
    storage.record_job_id(key, "job-17")  # idempotent
    assert storage.transition_query(key, expected="dispatched", new="running")
    assert storage.transition_query(key, expected="running", new="succeeded",
                                    values={"yield": 0.8, "cost": 2}, noise={"yield": 0.01})
    # a second (stale) writer with another result loses; the first result stays
    assert not storage.transition_query(key, expected="running", new="succeeded",
                                        values={"yield": 0.1, "cost": 9})
    q = storage.get_query(key)
    assert (q.status, q.job_id, q.attempts) == ("succeeded", "job-17", 1)
    assert q.values == {"yield": 0.8, "cost": 2.0} and q.noise == {"yield": 0.01}
    assert q.dispatched_at is not None and q.finished_at >= q.dispatched_at
    transitions = [e.payload for e in storage.list_events("c1", kind="query.transition")]
    assert [(p["from"], p["to"]) for p in transitions] == [
        ("pending", "dispatched"), ("dispatched", "running"), ("running", "succeeded")]


def test_conflicting_transitions_refused(storage: Storage) -> None:
    key = setup_round(storage)[0]
    with pytest.raises(InvalidTransition) as info:
        storage.transition_query(key, expected="pending", new="succeeded", values={"y": 1})
    assert str(info.value) == (
        "query 'c1:0:1': transition pending -> succeeded is not allowed; from pending the "
        "allowed next states are: cancelled, dispatched, failed")
    assert storage.transition_query(key, expected="pending", new="cancelled", error="user stop")
    with pytest.raises(InvalidTransition, match="from cancelled the allowed next states are: "
                                                r"none \(terminal\)"):
        storage.transition_query(key, expected="cancelled", new="pending")
    with pytest.raises(InvalidTransition, match="expected status 'done' is not one of pending"):
        storage.transition_query(key, expected="done", new="failed", error="x")
    assert storage.get_query(key).status == "cancelled"


def test_failure_reason_kept_in_full(storage: Storage) -> None:
    key = setup_round(storage)[0]
    storage.transition_query(key, expected="pending", new="dispatched")
    reason = "Traceback (most recent call last):\n" + "x" * 100_000
    assert storage.transition_query(key, expected="dispatched", new="failed", error=reason)
    assert storage.get_query(key).error == reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"new": "succeeded"}, "query 'c1:0:1': a succeeded query needs values (objective -> number)"),
        ({"new": "succeeded", "values": {"y": float("nan")}},
         "query 'c1:0:1': values['y'] = nan is not finite; mark the query failed with this "
         "reason instead"),
        ({"new": "succeeded", "values": {"y": "high"}},
         "query 'c1:0:1': values['y'] = 'high' is not a number"),
        ({"new": "failed"}, "query 'c1:0:1': a failed query needs its error text (the reason)"),
        ({"new": "running", "values": {"y": 1}},
         "query 'c1:0:1': values are only stored with new='succeeded'"),
        ({"new": "running", "job_id": ""}, "query 'c1:0:1': job_id must be a non-empty string"),
    ],
)
def test_bad_transition_input(storage: Storage, kwargs: dict, message: str) -> None:
    key = setup_round(storage)[0]
    storage.transition_query(key, expected="pending", new="dispatched")
    with pytest.raises(InvalidValue, match=re.escape(message)):
        storage.transition_query(key, expected="dispatched", **kwargs)
    assert storage.get_query(key).status == "dispatched"


def test_job_id_never_replaced(storage: Storage) -> None:
    key = setup_round(storage)[0]
    assert storage.transition_query(key, expected="pending", new="dispatched", job_id="A")
    with pytest.raises(JobIdConflict) as info:
        storage.transition_query(key, expected="dispatched", new="running", job_id="B")
    assert str(info.value) == ("query 'c1:0:1' already has job id 'A'; refusing to replace it "
                               "with 'B' (re-poll the stored job instead of submitting again)")
    with pytest.raises(JobIdConflict):
        storage.record_job_id(key, "B")
    # a known job is never sent back to pending (it would be submitted twice)
    assert not storage.transition_query(key, expected="dispatched", new="pending")
    assert storage.get_query(key).status == "dispatched"
    with pytest.raises(NotFound, match="query 'c1:9:9' does not exist"):
        storage.record_job_id("c1:9:9", "A")


def test_submission_that_never_reached_oracle_is_retried_with_same_key(storage: Storage) -> None:
    key = setup_round(storage)[0]
    assert storage.transition_query(key, expected="pending", new="dispatched")
    assert storage.transition_query(key, expected="dispatched", new="pending")
    assert storage.transition_query(key, expected="pending", new="dispatched", job_id="J")
    assert storage.get_query(key).attempts == 2


def test_claims_are_exclusive_and_leases_expire_by_database_clock(storage: Storage) -> None:
    keys = setup_round(storage, num=10, selected=(0, 1, 2, 3, 4))
    first = storage.claim_queries("c1", owner="w1", limit=3, lease_seconds=60)
    assert [q.key for q in first] == keys[:3]
    assert all(q.lease_owner == "w1" and q.design is not None for q in first)
    # long leases: "still leased" below cannot turn into "expired" on a stalled CI machine
    second = storage.claim_queries("c1", owner="w2", limit=10, lease_seconds=600)
    assert [q.key for q in second] == keys[3:]
    assert storage.claim_queries("c1", owner="w3", limit=10) == []
    # only the lease holder may move a leased query when it names itself
    assert not storage.transition_query(keys[0], expected="pending", new="dispatched", owner="w2")
    assert storage.transition_query(keys[0], expected="pending", new="dispatched", owner="w1")
    assert all(storage.release_lease(k, owner="w2") for k in keys[3:])
    short = storage.claim_queries("c1", owner="w2", limit=10, lease_seconds=0.3)
    assert [q.key for q in short] == keys[3:]
    time.sleep(0.6)  # w2's short leases run out on the database clock
    taken = storage.claim_queries("c1", owner="w3", limit=10)
    assert [q.key for q in taken] == keys[3:]
    assert storage.release_lease(keys[1], owner="w1")
    assert [q.key for q in storage.claim_queries("c1", owner="w4", limit=10)] == [keys[1]]
    # dispatched work is claimable for re-polling under its own status
    polled = storage.claim_queries("c1", owner="w5", statuses=("dispatched", "running"))
    assert polled == []  # keys[0] is still leased to w1 for 60 s
    assert storage.transition_query(keys[0], expected="dispatched", new="succeeded",
                                    values={"y": 1.0}, owner="w1")
    assert storage.get_query(keys[0]).lease_owner is None  # terminal states drop the lease


def test_bad_claim_arguments(storage: Storage) -> None:
    setup_round(storage)
    with pytest.raises(InvalidValue, match=re.escape("statuses: ['succeeded'] must be non-empty "
                                                     "and among pending, dispatched, running")):
        storage.claim_queries("c1", owner="w", statuses=("succeeded",))
    with pytest.raises(InvalidValue, match="limit: expected an integer >= 1, got 0"):
        storage.claim_queries("c1", owner="w", limit=0)
    with pytest.raises(InvalidValue, match="lease_seconds: must be > 0, got -1"):
        storage.claim_queries("c1", owner="w", lease_seconds=-1)


def test_counts(storage: Storage) -> None:
    keys = setup_round(storage)
    storage.transition_query(keys[0], expected="pending", new="failed", error="bad design")
    counts = storage.query_counts("c1")
    assert counts == {"pending": 2, "dispatched": 0, "running": 0, "succeeded": 0,
                      "failed": 1, "cancelled": 0}


def test_unknown_key(storage: Storage) -> None:
    setup_round(storage)
    with pytest.raises(NotFound, match="query 'c1:0:2' does not exist"):
        storage.transition_query("c1:0:2", expected="pending", new="dispatched")


def test_postgres_claim_skips_rows_locked_by_another_transaction(pg_schema: str) -> None:
    import sqlalchemy as sa

    from pg_schemas import postgres_schema_url
    from storage import upgrade
    from storage.engine import create_engine

    # lock_timeout: if the claim waited on the locked rows instead of skipping them, it errors.
    url = postgres_schema_url(pg_schema, lock_timeout="2000")
    upgrade(url)
    with Storage.open(url) as storage:
        keys = setup_round(storage, num=10, selected=(0, 1, 2, 3, 4))
        other = create_engine(url)
        with other.begin() as conn:  # another driver mid-claim: first two rows locked
            locked = conn.execute(sa.text(
                "SELECT idempotency_key FROM oracle_query ORDER BY id LIMIT 2 FOR UPDATE"
            )).scalars().all()
            assert locked == keys[:2]
            claimed = storage.claim_queries("c1", owner="w2", limit=10)
            assert [q.key for q in claimed] == keys[2:]
        other.dispose()
        # once the other transaction ends (without leasing them) the rows are claimable
        assert [q.key for q in storage.claim_queries("c1", owner="w3", limit=10)] == keys[:2]
