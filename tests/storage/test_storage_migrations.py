"""Migrations: up from empty, down to base, up again; models and migration head do not drift;
start-up refuses a database at an old, empty or unknown revision with the command to run."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage import (
    InvalidValue,
    SchemaNotInitialized,
    SchemaOutOfDate,
    SchemaTooNew,
    Storage,
    StorageError,
    current,
    downgrade,
    head_revision,
    upgrade,
)
from storage.engine import create_engine, redact
from storage.models import Base

TABLES = {"campaign", "campaign_config", "round", "candidate", "oracle_query", "event",
          "campaign_lease", "api_token", "pull_claim"}
SERVICE = {"campaign_lease", "api_token", "pull_claim"}  # added by 0005


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    assert current(empty_url) is None
    assert _tables(empty_url) == set()
    assert upgrade(empty_url) == (None, head_revision())
    assert _tables(empty_url) == TABLES
    assert downgrade(empty_url, "base") == (head_revision(), None)
    assert _tables(empty_url) == set()
    upgrade(empty_url, "0001")
    assert _tables(empty_url) == TABLES - {"event", "campaign_config"} - SERVICE
    upgrade(empty_url, "0002")
    assert _tables(empty_url) == TABLES - {"campaign_config"} - SERVICE
    upgrade(empty_url, "0004")
    assert _tables(empty_url) == TABLES - SERVICE
    upgrade(empty_url)
    assert current(empty_url) == head_revision() == "0007"
    assert _tables(empty_url) == TABLES


def test_models_match_migration_head(storage_url: str) -> None:
    engine = create_engine(storage_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_data_survives_downgrade_of_leases_and_upgrade(storage_url: str) -> None:
    from storage_helpers import setup_round

    with Storage.open(storage_url) as storage:
        keys = setup_round(storage)
    downgrade(storage_url, "0001")
    upgrade(storage_url)
    with Storage.open(storage_url) as storage:
        assert [q.key for q in storage.list_queries("c1")] == keys


def test_open_refuses_empty_database(empty_url: str) -> None:
    with pytest.raises(SchemaNotInitialized) as info:
        Storage.open(empty_url)
    assert str(info.value) == (
        f"database {redact(empty_url)!r} has no tiltloop schema (revision none, this tiltloop "
        f"needs 0007); run: tiltloop db upgrade --url '{redact(empty_url)}'"
    )


def test_open_refuses_old_revision(empty_url: str) -> None:
    upgrade(empty_url, "0001")
    with pytest.raises(SchemaOutOfDate) as info:
        Storage.open(empty_url)
    assert str(info.value) == (
        f"database {redact(empty_url)!r} is at schema revision 0001, older than this "
        f"tiltloop's 0007; run: tiltloop db upgrade --url '{redact(empty_url)}'"
    )
    Storage.open(empty_url, check_schema=False).close()  # an explicit opt-out still connects


def test_open_refuses_unknown_newer_revision(storage_url: str) -> None:
    engine = create_engine(storage_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match=r"at schema revision 0099, unknown to this tiltloop "
                                           r"\(head 0007\): a newer tiltloop wrote it"):
        Storage.open(storage_url)


@pytest.mark.timeout(90)
def test_concurrent_upgrades_serialise(empty_url: str) -> None:
    # Two services starting at once on an empty database: one migrates, the other waits
    # (advisory lock on Postgres, BEGIN IMMEDIATE on SQLite) and then finds nothing to do.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: upgrade(empty_url), range(2)))
    assert sorted(results, key=str) == [("0007", "0007"), (None, "0007")]
    assert current(empty_url) == head_revision()


def test_0002_to_0003_gives_existing_campaigns_version_1(storage_url: str) -> None:
    from storage_helpers import setup_round

    with Storage.open(storage_url) as storage:
        keys = setup_round(storage, "c1")
        storage.add_config_version("c1", {"alpha": 0.05})  # the current config at downgrade
        setup_round(storage, "c1", index=1)
        storage.create_campaign("c2", {"other": True})
    assert downgrade(storage_url, "0002") == ("0007", "0002")
    assert "campaign_config" not in _tables(storage_url)
    assert upgrade(storage_url) == ("0002", "0007")
    with Storage.open(storage_url) as storage:
        versions = storage.config_versions("c1")
        assert [(v.version, v.config, v.note) for v in versions] == [
            (1, {"alpha": 0.05}, "version 1: the config when migration 0003 ran")]
        assert [v.config for v in storage.config_versions("c2")] == [{"other": True}]
        assert [r.config_version for r in storage.list_rounds("c1")] == [1, 1]
        # the SQLite rebuild of the campaign table cascaded nothing away
        assert [q.key for q in storage.list_queries("c1")][:3] == keys
        assert len(storage.list_queries("c1")) == 6
        assert len(storage.list_events("c1")) == 4
        assert storage.add_config_version("c1", {"alpha": 0.02}).version == 2


def test_cancelled_status_and_its_downgrade(storage_url: str) -> None:
    with Storage.open(storage_url) as storage:
        storage.create_campaign("c1", {})
        storage.create_campaign("c2", {})
        assert storage.update_campaign("c1", status="cancelled").status == "cancelled"
        with pytest.raises(StorageError, match="ck_campaign_status"):
            with storage.session() as session:  # the database's CHECK, not only the API
                session.execute(sa.text("UPDATE campaign SET status = 'bogus'"))
    with pytest.raises(InvalidValue) as info:
        downgrade(storage_url, "0002")
    assert str(info.value) == (
        "cannot downgrade to revision 0002: campaign(s) 'c1' have status 'cancelled', which "
        "0002 cannot store; set another status (update_campaign(name, status='archived')) or "
        "delete them (delete_campaign(name)), then downgrade again")
    assert current(storage_url) == "0007"  # rolled back whole
    with Storage.open(storage_url) as storage:
        storage.update_campaign("c1", status="archived")
    downgrade(storage_url, "0002")
    with pytest.raises(StorageError, match="ck_campaign_status"):
        _execute_mapped(storage_url, "UPDATE campaign SET status = 'cancelled'")
    # 0002's event log refuses every DELETE again, so a campaign with events cannot go
    with pytest.raises(StorageError, match="the event log is append-only: DELETE on event"):
        _execute_mapped(storage_url, "DELETE FROM campaign")


def _execute_mapped(url: str, statement: str) -> None:
    with Storage.open(url, check_schema=False) as storage:
        with storage.session() as session:
            session.execute(sa.text(statement))


def test_candidate_exclusion_reason_stored_and_0004_downgrade(storage_url: str) -> None:
    import numpy as np

    from storage import NewCandidate

    with Storage.open(storage_url) as storage:
        storage.create_campaign("c1", {})
        storage.record_round("c1", 0, alpha=1.0, oracle_name="lab", selected=[0], candidates=[
            NewCandidate(np.zeros(2)), NewCandidate(np.ones(2), excluded_reason="queried")])
        assert [c.excluded_reason for c in storage.list_candidates("c1", 0)] == [None, "queried"]
        with pytest.raises(InvalidValue, match=r"candidates\[0\]\.excluded_reason"):
            storage.record_round("c1", 1, alpha=1.0, oracle_name="lab", selected=[],
                                 candidates=[NewCandidate(np.zeros(2), excluded_reason="x" * 65)])
    assert downgrade(storage_url, "0003") == ("0007", "0003")
    upgrade(storage_url)
    with Storage.open(storage_url) as storage:
        assert [c.excluded_reason for c in storage.list_candidates("c1", 0)] == [None, None]


def test_0005_service_tables_downgrade_and_upgrade(storage_url: str) -> None:
    from storage_helpers import setup_round

    with Storage.open(storage_url) as storage:
        keys = setup_round(storage, "c1")
        assert storage.acquire_campaign_lease("c1", "replica-a", 30.0) is not None
        storage.create_token(["admin"])
        assert len(storage.claim_work("c1", "lab-1", "r1", 2, 30.0)) == 2
    assert downgrade(storage_url, "0004") == ("0007", "0004")
    assert _tables(storage_url) == TABLES - SERVICE
    assert "pull_claim_id" not in _columns(storage_url, "oracle_query")
    assert upgrade(storage_url) == ("0004", "0007")
    with Storage.open(storage_url) as storage:
        queries = storage.list_queries("c1")
        assert [q.key for q in queries] == keys  # the SQLite rebuild of oracle_query kept them
        assert [q.status for q in queries] == ["dispatched", "dispatched", "pending"]
        assert storage.campaign_lease("c1") is None and storage.list_tokens() == []


def test_0006_queue_index_ends_with_the_id(storage_url: str) -> None:
    def indexes() -> dict[str, list[str]]:
        engine = create_engine(storage_url)
        try:
            return {i["name"]: i["column_names"]
                    for i in sa.inspect(engine).get_indexes("oracle_query")}
        finally:
            engine.dispose()

    assert indexes()["ix_oracle_query_campaign_id_status_id"] == ["campaign_id", "status", "id"]
    assert "ix_oracle_query_campaign_id_status" not in indexes()
    assert downgrade(storage_url, "0005") == ("0007", "0005")
    assert indexes()["ix_oracle_query_campaign_id_status"] == ["campaign_id", "status"]
    assert upgrade(storage_url) == ("0005", "0007")
    assert "ix_oracle_query_campaign_id_status_id" in indexes()


def test_0007_round_unique_ancestors_stored_and_downgraded(storage_url: str) -> None:
    import numpy as np

    from storage import NewCandidate
    from storage_helpers import setup_round

    with Storage.open(storage_url) as storage:
        keys = setup_round(storage, "c1")  # written without a count: NULL
        storage.record_round("c1", 1, alpha=1.0, candidates=[NewCandidate(np.zeros(2))],
                             unique_ancestors=np.int64(7))  # numpy ints become Python ints
        assert [r.unique_ancestors for r in storage.list_rounds("c1")] == [None, 7]
        assert storage.load_round("c1", 1).unique_ancestors == 7
        for bad in (-1, 2.5, True):
            with pytest.raises(InvalidValue, match="unique_ancestors"):
                storage.record_round("c1", 2, alpha=1.0, candidates=[NewCandidate(np.zeros(2))],
                                     unique_ancestors=bad)
    assert downgrade(storage_url, "0006") == ("0007", "0006")
    assert "unique_ancestors" not in _columns(storage_url, "round")
    assert upgrade(storage_url) == ("0006", "0007")
    with Storage.open(storage_url) as storage:
        assert [r.unique_ancestors for r in storage.list_rounds("c1")] == [None, None]
        assert [q.key for q in storage.list_queries("c1")] == keys  # the rebuild kept the rows
