"""Campaign config versions: version 1 on create, appends in order, the current config mirrored
in the campaign row, races between two writers, rounds remembering their version."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from storage import (
    ConfigVersionConflict,
    IntegrityViolation,
    InvalidValue,
    NotFound,
    Storage,
)
from storage_helpers import make_candidates


def test_create_writes_version_1_and_adds_append_in_order(storage: Storage) -> None:
    storage.create_campaign("c1", {"alpha": 0.1})
    assert storage.current_config_version("c1") == 1
    second = storage.add_config_version("c1", {"alpha": 0.05}, note="cooler tilt")
    third = storage.add_config_version("c1", {"alpha": 0.02})
    assert (second.version, second.note, third.version, third.note) == (2, "cooler tilt", 3, None)
    versions = storage.config_versions("c1")
    assert [(v.version, v.config, v.note) for v in versions] == [
        (1, {"alpha": 0.1}, None), (2, {"alpha": 0.05}, "cooler tilt"), (3, {"alpha": 0.02}, None)]
    assert versions[0].created_at <= versions[1].created_at <= versions[2].created_at
    assert versions[2].created_at.tzinfo is not None
    assert storage.current_config_version("c1") == 3
    assert storage.load_campaign("c1").config == {"alpha": 0.02}  # campaign.config = newest
    changes = [e.payload for e in storage.list_events("c1", kind="campaign.config_changed")]
    assert changes == [{"old_version": 1, "new_version": 2, "note": "cooler tilt"},
                       {"old_version": 2, "new_version": 3}]  # versions, never the config


def test_versions_are_per_campaign(storage: Storage) -> None:
    storage.create_campaign("c1", {"a": 1})
    storage.create_campaign("c2", {"b": 1})
    storage.add_config_version("c2", {"b": 2})
    assert [v.version for v in storage.config_versions("c1")] == [1]
    assert [v.config for v in storage.config_versions("c2")] == [{"b": 1}, {"b": 2}]


def test_update_campaign_config_appends_a_version(storage: Storage) -> None:
    storage.create_campaign("c1", {"budget": 10})
    storage.update_campaign("c1", config={"budget": 20}, budget=20)
    assert [(v.version, v.config, v.note) for v in storage.config_versions("c1")] == [
        (1, {"budget": 10}, None), (2, {"budget": 20}, "set by update_campaign")]
    assert storage.load_campaign("c1").config == {"budget": 20}
    storage.update_campaign("c1", status="paused")  # no config given: no new version
    assert storage.current_config_version("c1") == 2


def test_stale_expected_version_is_refused(storage: Storage) -> None:
    storage.create_campaign("c1", {"a": 1})
    storage.add_config_version("c1", {"a": 2}, expected_version=1)
    with pytest.raises(ConfigVersionConflict) as info:
        storage.add_config_version("c1", {"a": 3}, expected_version=1)
    assert str(info.value) == (
        "campaign 'c1' is at config version 2, not 1 as expected; reload the current config "
        "(config_versions('c1')) and apply your change again")
    assert storage.load_campaign("c1").config == {"a": 2}


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"config": {"x": float("inf")}}, InvalidValue, "config: not storable as strict JSON"),
    ({"config": [1, 2]}, InvalidValue, "config: expected a JSON object (dict), got list"),
    ({"config": {}, "note": 3}, InvalidValue, "note: expected text or None, got int 3"),
])
def test_bad_input(storage: Storage, kwargs: dict, error: type, message: str) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(error) as info:
        storage.add_config_version("c1", **kwargs)
    assert str(info.value).startswith(message)
    assert storage.current_config_version("c1") == 1


def test_missing_campaign(storage: Storage) -> None:
    with pytest.raises(NotFound, match=r"campaign 'nope' not found in .*create it first"):
        storage.add_config_version("nope", {})
    with pytest.raises(NotFound, match="campaign 'nope' not found"):
        storage.config_versions("nope")


def test_database_refuses_a_duplicate_version(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(IntegrityViolation, match="refused the write"):
        with storage.session() as session:
            session.execute(sa.text(
                "INSERT INTO campaign_config (campaign_id, version, config) "
                "SELECT id, 1, config FROM campaign"))


@pytest.mark.timeout(60)
def test_racing_writers_cannot_write_the_same_version(storage_url: str, backend: str) -> None:
    # a reads n = 1 and stops just before inserting version 2; b then adds a version.
    # Postgres: b writes 2, a's insert of 2 hits the unique constraint -> ConfigVersionConflict.
    # SQLite: b waits for a's write lock (BEGIN IMMEDIATE); a writes 2, then b writes 3.
    a, b = Storage.open(storage_url, actor="a"), Storage.open(storage_url, actor="b")
    try:
        a.create_campaign("c1", {"by": "create"})
        a_paused, b_done = threading.Event(), threading.Event()

        @event.listens_for(a.engine, "before_cursor_execute")
        def _pause(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            if statement.startswith("INSERT INTO campaign_config"):
                a_paused.set()
                b_done.wait(timeout=1.0)  # SQLite: b cannot finish before a; go on after 1 s

        with ThreadPoolExecutor(1) as pool:
            from_a = pool.submit(a.add_config_version, "c1", {"by": "a"})
            assert a_paused.wait(timeout=30)
            from_b = b.add_config_version("c1", {"by": "b"})
            b_done.set()
            if backend == "postgresql":
                with pytest.raises(ConfigVersionConflict) as info:
                    from_a.result(timeout=30)
                assert str(info.value) == (
                    "campaign 'c1': config version 2 was written by another writer at the same "
                    "time; reload the current config (config_versions('c1')) and apply your "
                    "change again")
                assert from_b.version == 2
                expected = [(1, "create"), (2, "b")]
            else:
                assert (from_a.result(timeout=30).version, from_b.version) == (2, 3)
                expected = [(1, "create"), (2, "a"), (3, "b")]
        assert [(v.version, v.config["by"]) for v in b.config_versions("c1")] == expected
        assert b.load_campaign("c1").config == {"by": expected[-1][1]}
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(120)
def test_many_concurrent_adds_give_unique_consecutive_versions(storage_url: str) -> None:
    stores = [Storage.open(storage_url, actor=f"w{i}") for i in range(2)]
    stores[0].create_campaign("c1", {"n": 0})

    def add_five(store: Storage) -> list[int]:
        won = []
        while len(won) < 5:
            try:
                won.append(store.add_config_version("c1", {"by": store.actor}).version)
            except ConfigVersionConflict:
                continue  # the other writer took this version: read the new n and retry
        return won

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(add_five, stores))
        written = sorted(results[0] + results[1])
        assert written == list(range(2, 12))  # no version twice, none skipped
        versions = stores[0].config_versions("c1")
        assert [v.version for v in versions] == list(range(1, 12))
        assert stores[0].load_campaign("c1").config == versions[-1].config
    finally:
        for store in stores:
            store.close()


def test_round_stores_the_config_version(storage: Storage) -> None:
    storage.create_campaign("c1", {"alpha": 0.1})
    first = storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(4))
    assert first.config_version == 1  # None given: the current version
    storage.add_config_version("c1", {"alpha": 0.05})
    second = storage.record_round("c1", 1, alpha=0.05, candidates=make_candidates(4))
    pinned = storage.record_round("c1", 2, alpha=0.1, candidates=make_candidates(4),
                                  config_version=1)
    assert (second.config_version, pinned.config_version) == (2, 1)
    assert [r.config_version for r in storage.list_rounds("c1")] == [1, 2, 1]
    assert storage.load_round("c1", 1).config_version == 2
    assert storage.list_events("c1", kind="round.recorded")[1].payload["config_version"] == 2
    # an identical re-write is still a no-op, and keeps the version it was written with
    again = storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(4))
    assert (again.content_hash, again.config_version) == (first.content_hash, 1)


def test_round_with_unknown_config_version_is_refused(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(NotFound) as info:
        storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(2), config_version=7)
    assert str(info.value) == (
        "config_version: campaign 'c1' has no config version 7 (versions 1..1); pass an "
        "existing version, or None for the current one")
    with pytest.raises(InvalidValue, match="config_version: expected an integer, got str"):
        storage.record_round("c1", 0, alpha=0.1, candidates=make_candidates(2),
                             config_version="1")  # type: ignore[arg-type]
    assert storage.list_rounds("c1") == []
