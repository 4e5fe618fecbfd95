"""Campaign leases: take / renew / refuse, expiry takeover by the database clock, heartbeat after
loss, release, and exclusivity when two Storage objects race in threads (both backends)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage import InvalidValue, LeaseRecord, NotFound, Storage


def _wait_until_expired(storage: Storage, name: str, timeout: float = 2.0) -> None:
    """Poll the database clock (not the host's) until ``name``'s lease has expired."""
    deadline = time.monotonic() + timeout
    while (lease := storage.campaign_lease(name)) is not None and lease.live:
        assert time.monotonic() < deadline, f"lease of {name!r} still live after {timeout} s"
        time.sleep(0.05)


def test_take_renew_refuse_release(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    assert storage.campaign_lease("c1") is None
    first = storage.acquire_campaign_lease("c1", "replica-a", 30.0)
    assert isinstance(first, LeaseRecord)
    assert (first.campaign, first.owner, first.live) == ("c1", "replica-a", True)
    assert first.acquired_at <= first.heartbeat_at < first.expires_at
    assert 29.0 < (first.expires_at - first.heartbeat_at).total_seconds() <= 30.5

    assert storage.acquire_campaign_lease("c1", "replica-b", 30.0) is None  # held by a
    renewed = storage.acquire_campaign_lease("c1", "replica-a", 60.0)
    assert renewed is not None and renewed.acquired_at == first.acquired_at
    assert renewed.expires_at > first.expires_at
    assert storage.campaign_lease("c1") == renewed

    assert not storage.release_campaign_lease("c1", "replica-b")
    assert storage.release_campaign_lease("c1", "replica-a")
    assert storage.campaign_lease("c1") is None
    assert not storage.release_campaign_lease("c1", "replica-a")
    taken = storage.acquire_campaign_lease("c1", "replica-b", 30.0)
    assert taken is not None and taken.owner == "replica-b"
    events = [(e.kind, e.payload) for e in storage.list_events("c1")
              if e.kind.startswith("campaign.lease")]
    assert events == [
        ("campaign.lease", {"owner": "replica-a", "previous_owner": None}),
        ("campaign.lease_released", {"owner": "replica-a"}),
        ("campaign.lease", {"owner": "replica-b", "previous_owner": None}),
    ]


def test_expired_lease_is_taken_over_and_heartbeat_after_loss_is_false(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    assert storage.acquire_campaign_lease("c1", "replica-a", 0.6) is not None
    assert storage.heartbeat_campaign_lease("c1", "replica-a", 0.6)
    assert storage.acquire_campaign_lease("c1", "replica-b", 30.0) is None
    _wait_until_expired(storage, "c1")
    # expired, nobody took it yet: the heartbeat still reports the loss
    assert not storage.heartbeat_campaign_lease("c1", "replica-a", 30.0)
    taken = storage.acquire_campaign_lease("c1", "replica-b", 30.0)
    assert taken is not None and taken.owner == "replica-b" and taken.live
    assert not storage.heartbeat_campaign_lease("c1", "replica-a", 30.0)
    assert not storage.release_campaign_lease("c1", "replica-a")
    assert storage.heartbeat_campaign_lease("c1", "replica-b", 30.0)
    assert storage.campaign_lease("c1").owner == "replica-b"  # type: ignore[union-attr]
    assert storage.list_events("c1", kind="campaign.lease")[-1].payload == {
        "owner": "replica-b", "previous_owner": "replica-a"}


def test_lease_arguments_and_missing_campaign(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(InvalidValue, match=r"ttl_s: expected seconds > 0 and <= 86400, got 0"):
        storage.acquire_campaign_lease("c1", "a", 0)
    with pytest.raises(InvalidValue, match="owner: expected a non-empty name"):
        storage.acquire_campaign_lease("c1", "", 10.0)
    with pytest.raises(InvalidValue, match="limit: expected an integer from 1 to 1000"):
        storage.acquire_free_campaigns("a", 10.0, 0)
    with pytest.raises(NotFound, match="campaign 'nope' not found"):
        storage.acquire_campaign_lease("nope", "a", 10.0)


def test_acquire_free_campaigns(storage: Storage) -> None:
    for name in ("c1", "c2", "c3", "c4", "c5"):
        storage.create_campaign(name, {})
    storage.update_campaign("c2", status="paused")
    storage.acquire_campaign_lease("c3", "replica-b", 30.0)
    storage.acquire_campaign_lease("c4", "replica-b", 0.2)
    _wait_until_expired(storage, "c4")
    assert storage.acquire_free_campaigns("replica-a", 30.0, 2) == ["c1", "c4"]
    assert storage.acquire_free_campaigns("replica-a", 30.0, 10) == ["c5"]
    assert storage.acquire_free_campaigns("replica-a", 30.0, 10) == []  # ours are not free
    assert {n: storage.campaign_lease(n).owner for n in ("c1", "c3", "c4", "c5")} == {  # type: ignore[union-attr]
        "c1": "replica-a", "c3": "replica-b", "c4": "replica-a", "c5": "replica-a"}
    assert storage.campaign_lease("c2") is None


def _race(url: str, work, parties: int = 2) -> list:  # type: ignore[no-untyped-def]
    """Run ``work(storage, i)`` in ``parties`` threads, each with its own Storage (engine)."""
    stores = [Storage.open(url, actor=f"replica-{i}") for i in range(parties)]
    barrier = threading.Barrier(parties, timeout=30)

    def run(i: int):  # type: ignore[no-untyped-def]
        barrier.wait()
        return work(stores[i], i)

    try:
        with ThreadPoolExecutor(parties) as pool:
            return list(pool.map(run, range(parties)))
    finally:
        for s in stores:
            s.close()


@pytest.mark.timeout(120)
def test_racing_acquires_never_give_one_campaign_to_two_owners(storage_url: str) -> None:
    with Storage.open(storage_url) as storage:
        for i in range(10):
            storage.create_campaign(f"c{i}", {})

    def take(storage: Storage, i: int) -> list[str]:
        won = []
        for c in range(10):
            if storage.acquire_campaign_lease(f"c{c}", f"replica-{i}", 30.0) is not None:
                won.append(f"c{c}")
        return won

    a, b = _race(storage_url, take)
    assert sorted(a + b, key=lambda n: int(n[1:])) == [f"c{i}" for i in range(10)]
    assert not set(a) & set(b)
    with Storage.open(storage_url) as storage:
        for name in a:
            assert storage.campaign_lease(name).owner == "replica-0"  # type: ignore[union-attr]
        for name in b:
            assert storage.campaign_lease(name).owner == "replica-1"  # type: ignore[union-attr]


@pytest.mark.timeout(120)
def test_racing_schedulers_take_disjoint_campaigns(storage_url: str) -> None:
    with Storage.open(storage_url) as storage:
        for i in range(12):
            storage.create_campaign(f"c{i}", {})

    def schedule(storage: Storage, i: int) -> list[str]:
        taken: list[str] = []
        for _ in range(6):
            taken += storage.acquire_free_campaigns(f"replica-{i}", 30.0, 2)
        return taken

    taken = _race(storage_url, schedule, parties=3)
    everything = [name for names in taken for name in names]
    assert len(everything) == len(set(everything)) == 12  # each exactly once
    with Storage.open(storage_url) as storage:
        for i, names in enumerate(taken):
            assert all(storage.campaign_lease(n).owner == f"replica-{i}"  # type: ignore[union-attr]
                       for n in names)


@pytest.mark.timeout(120)
def test_racing_takeover_of_an_expired_lease_has_one_winner(storage_url: str) -> None:
    with Storage.open(storage_url) as storage:
        storage.create_campaign("c1", {})
        storage.acquire_campaign_lease("c1", "dead-replica", 0.2)
        _wait_until_expired(storage, "c1")

    def take(storage: Storage, i: int) -> bool:
        return storage.acquire_campaign_lease("c1", f"replica-{i}", 30.0) is not None

    assert sorted(_race(storage_url, take, parties=4)) == [False, False, False, True]
