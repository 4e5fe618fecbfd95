"""Campaigns: unique names, resume hint, updates, the audit log."""
from __future__ import annotations

import pytest

from storage import CampaignExists, InvalidValue, NotFound, Storage


def test_create_load_update(storage: Storage) -> None:
    created = storage.create_campaign("ackley-01", {"alpha": 0.1, "dims": [2, 3]}, budget=20)
    assert created.status == "active" and created.budget == 20
    assert created.created_at.tzinfo is not None  # database clock, UTC, on both backends
    loaded = storage.load_campaign("ackley-01")
    assert loaded.config == {"alpha": 0.1, "dims": [2, 3]}
    updated = storage.update_campaign("ackley-01", budget=50, status="paused")
    assert (updated.budget, updated.status, updated.config) == (50, "paused", loaded.config)
    assert updated.updated_at >= loaded.updated_at
    assert [c.name for c in storage.list_campaigns()] == ["ackley-01"]
    kinds = [(e.kind, e.actor) for e in storage.list_events("ackley-01")]
    assert kinds == [("campaign.created", "test"), ("campaign.updated", "test")]
    assert storage.list_events("ackley-01", kind="campaign.updated")[0].payload == {
        "budget": 50, "status": "paused"}


def test_duplicate_name_names_it_and_how_to_resume(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(CampaignExists) as info:
        storage.create_campaign("c1", {"other": 1})
    text = str(info.value)
    assert text.startswith("campaign 'c1' already exists (status active, created ")
    assert text.endswith("resume it with `tiltloop resume c1` (load_campaign('c1')) or choose "
                         "another name")
    assert storage.load_campaign("c1").config == {}  # the first one is untouched


def test_missing_campaign_lists_existing(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(NotFound, match=r"campaign 'c2' not found in .* \(existing: c1\); "
                                       r"create it first or check --url"):
        storage.load_campaign("c2")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a:b", "config": {}}, "campaign name 'a:b' is invalid"),
        ({"name": "c", "config": {"x": float("nan")}}, "config: not storable as strict JSON"),
        ({"name": "c", "config": {}, "budget": -1}, "budget: expected a non-negative integer"),
    ],
)
def test_bad_campaign_input(storage: Storage, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(")):
        storage.create_campaign(**kwargs)
    assert storage.list_campaigns() == []


def test_bad_status(storage: Storage) -> None:
    storage.create_campaign("c1", {})
    with pytest.raises(InvalidValue, match="campaign status 'done' is not one of active, paused"):
        storage.update_campaign("c1", status="done")


@pytest.mark.parametrize("statement", ["UPDATE event SET kind = 'forged'", "DELETE FROM event"])
def test_event_log_is_append_only_in_the_database(storage: Storage, statement: str) -> None:
    import sqlalchemy as sa

    from storage import StorageError

    storage.create_campaign("c1", {})
    storage.log_event("c1", "loop.note", {"text": "kept"})
    verb = statement.split()[0]
    with pytest.raises(StorageError, match=f"the event log is append-only: {verb} on event refused"):
        with storage.session() as session:
            session.execute(sa.text(statement))
    assert [e.kind for e in storage.list_events("c1")] == ["campaign.created", "loop.note"]
