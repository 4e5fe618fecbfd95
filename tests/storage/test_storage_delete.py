"""Deleting a campaign removes every row of it in every table and nothing of any other campaign;
in-flight queries block it; failure reasons and the in-flight count for the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from storage import CampaignBusy, NotFound, Storage
from storage.engine import create_engine
from storage.models import Base
from storage_helpers import setup_round

# The rows of campaign :name in each table, written out by hand (not derived from the models,
# so a wrong foreign-key walk in delete_campaign cannot hide itself).
OWNED = {
    "campaign": "SELECT count(*) FROM campaign WHERE name = :name",
    "campaign_config": "SELECT count(*) FROM campaign_config JOIN campaign c "
                       "ON c.id = campaign_id WHERE c.name = :name",
    "round": "SELECT count(*) FROM round JOIN campaign c ON c.id = campaign_id "
             "WHERE c.name = :name",
    "candidate": "SELECT count(*) FROM candidate JOIN round r ON r.id = round_id "
                 "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = :name",
    "oracle_query": "SELECT count(*) FROM oracle_query JOIN campaign c ON c.id = campaign_id "
                    "WHERE c.name = :name",
    "event": "SELECT count(*) FROM event JOIN campaign c ON c.id = campaign_id "
             "WHERE c.name = :name",
    "campaign_lease": "SELECT count(*) FROM campaign_lease JOIN campaign c "
                      "ON c.id = campaign_id WHERE c.name = :name",
    "pull_claim": "SELECT count(*) FROM pull_claim JOIN campaign c ON c.id = campaign_id "
                  "WHERE c.name = :name",
}
#: Tables whose rows belong to no campaign (deleting a campaign leaves them alone).
SHARED = {"api_token"}


def _owned(storage: Storage, name: str) -> dict[str, int]:
    with storage.session() as session:
        return {t: session.scalar(sa.text(sql), {"name": name}) for t, sql in OWNED.items()}


def _totals(storage: Storage) -> dict[str, int]:
    with storage.session() as session:
        return {t: session.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in OWNED}


def _busy_campaign(storage: Storage, name: str) -> None:
    """Three rounds, two config versions, queries in every kind of state, a query lease, a
    campaign lease, a pull claim, events."""
    keys = setup_round(storage, name, num=8, selected=(0, 1, 2, 3))
    storage.add_config_version(name, {"alpha": 0.05}, note="second")
    storage.transition_query(keys[0], expected="pending", new="dispatched", job_id="j0")
    storage.transition_query(keys[0], expected="dispatched", new="succeeded", values={"y": 1.0})
    storage.transition_query(keys[1], expected="pending", new="failed", error="oracle said 500")
    storage.transition_query(keys[2], expected="pending", new="cancelled", error="stopped")
    storage.claim_queries(name, owner="worker-1", limit=1)  # a lease on keys[3]
    (pulled,) = setup_round(storage, name, num=2, selected=(0,), index=9)
    assert [q.key for q in storage.claim_work(name, "lab-1", "req-1", 5, 60.0)] == [pulled]
    assert storage.report_work(pulled, "lab-1", values={"y": 2.0})
    keys += setup_round(storage, name, num=6, selected=(4, 5), index=1)
    storage.log_event(name, "loop.note", {"text": "hello"})
    assert storage.acquire_campaign_lease(name, "replica-a", 60.0) is not None


def _settle(storage: Storage, name: str) -> None:
    for q in storage.list_queries(name, statuses=["pending"]):
        storage.transition_query(q.key, expected="pending", new="cancelled", error="deleting")


def test_model_tables_are_all_counted() -> None:
    # A new table under campaign must be added to OWNED (and so to the delete test).
    assert set(Base.metadata.tables) == set(OWNED) | SHARED


def test_delete_removes_every_row_of_the_campaign_and_nothing_else(storage: Storage) -> None:
    _busy_campaign(storage, "c1")
    _busy_campaign(storage, "c2")
    _settle(storage, "c1")
    before, c1, c2 = _totals(storage), _owned(storage, "c1"), _owned(storage, "c2")
    assert all(c1.values()) and c1 == {**c2, "event": c1["event"]}

    deleted = storage.delete_campaign("c1")

    assert deleted == c1  # every table, with the number of rows it lost
    assert _owned(storage, "c1") == dict.fromkeys(OWNED, 0)
    assert _owned(storage, "c2") == c2
    assert _totals(storage) == {t: before[t] - c1[t] for t in OWNED}
    assert [c.name for c in storage.list_campaigns()] == ["c2"]
    with pytest.raises(NotFound, match=r"campaign 'c1' not found in .* \(existing: c2\)"):
        storage.load_campaign("c1")
    storage.create_campaign("c1", {"fresh": True})  # the name is free again
    assert [v.version for v in storage.config_versions("c1")] == [1]
    assert storage.list_queries("c1") == [] and storage.list_rounds("c1") == []


def test_delete_refused_while_queries_are_in_flight(storage: Storage) -> None:
    _busy_campaign(storage, "c1")
    assert storage.in_flight_count("c1") == 3  # keys 3 (leased), 4, 5 are pending
    before = _owned(storage, "c1")
    with pytest.raises(CampaignBusy) as info:
        storage.delete_campaign("c1")
    assert str(info.value) == (
        "campaign 'c1' has 3 queries in flight (pending, dispatched or running: c1:0:3, c1:1:4, "
        "c1:1:5); wait for them or cancel them first, or delete anyway with "
        "allow_in_flight=True (their results will be lost)")
    assert _owned(storage, "c1") == before  # nothing deleted
    assert storage.delete_campaign("c1", allow_in_flight=True) == before
    assert _owned(storage, "c1") == dict.fromkeys(OWNED, 0)


def test_delete_missing_campaign(storage: Storage) -> None:
    storage.create_campaign("c2", {})
    with pytest.raises(NotFound, match=r"campaign 'c1' not found in .* \(existing: c2\); "
                                       r"create it first or check --url"):
        storage.delete_campaign("c1")


def test_delete_on_sqlite_without_foreign_key_enforcement(tmp_path: Path) -> None:
    # ON DELETE CASCADE does nothing on an SQLite connection without PRAGMA foreign_keys = ON:
    # delete_campaign must still leave no orphan behind.
    from storage import upgrade

    url = f"sqlite:///{tmp_path / 'nofk.db'}"
    upgrade(url)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _no_fk(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # runs after storage's ON

    with Storage(engine, actor="test") as storage:
        with storage.session() as session:
            assert session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 0
        _busy_campaign(storage, "c1")
        _busy_campaign(storage, "c2")
        c1, c2 = _owned(storage, "c1"), _owned(storage, "c2")
        before = _totals(storage)
        assert storage.delete_campaign("c1", allow_in_flight=True) == c1
        assert _owned(storage, "c2") == c2
        assert _totals(storage) == {t: before[t] - c1[t] for t in OWNED}


def test_events_stay_append_only_while_their_campaign_exists(storage: Storage) -> None:
    from storage import StorageError

    storage.create_campaign("c1", {})
    with pytest.raises(StorageError, match="the event log is append-only: DELETE on event"):
        with storage.session() as session:
            session.execute(sa.text("DELETE FROM event"))
    assert len(storage.list_events("c1")) == 1


def test_failure_reasons_and_in_flight_count(storage: Storage) -> None:
    keys = setup_round(storage, "c1", num=6, selected=(0, 1, 2, 3, 4))
    assert storage.failure_reasons("c1") == []
    assert storage.in_flight_count("c1") == 5
    storage.transition_query(keys[3], expected="pending", new="failed", error="NaN in output")
    storage.transition_query(keys[0], expected="pending", new="failed", error="timeout after 60s")
    storage.transition_query(keys[1], expected="pending", new="cancelled", error="stopped")
    storage.transition_query(keys[2], expected="pending", new="dispatched", job_id="j2")
    assert storage.failure_reasons("c1") == [("c1:0:0", "timeout after 60s"),
                                             ("c1:0:3", "NaN in output")]  # query order
    assert storage.in_flight_count("c1") == 2  # dispatched c1:0:2 and pending c1:0:4
    with pytest.raises(NotFound, match="campaign 'zz' not found"):
        storage.failure_reasons("zz")
