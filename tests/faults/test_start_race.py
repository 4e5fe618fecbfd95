"""Two ``run``s of one new campaign at once: both read "no such campaign", both create it, and
the loser's write is refused by the database (a unique name). The loser must continue as if the
campaign had existed (the driver lease then refuses it with the holder's name), not exit with
"refused the write: duplicate key". The interleaving is forced: the loser's first read is made to
miss the winner's row."""
from __future__ import annotations

from pathlib import Path

import pytest

from campaign_configs import campaign_config
from optimizer.campaign.service import open_storage, start_or_resume
from optimizer.errors import CampaignStateError
from storage import Storage
from storage.errors import NotFound


def _late_reader(st: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    real = st.load_campaign
    calls = [0]

    def load(name: str):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 1:
            raise NotFound(f"no campaign {name!r} (read before the other driver's write)")
        return real(name)
    monkeypatch.setattr(st, "load_campaign", load)


def test_the_second_of_two_simultaneous_starts_continues_the_campaign(
        db_url: str, tiny_prior_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = campaign_config("racing", tiny_prior_path, "http://127.0.0.1:9", db_url)
    with open_storage(db_url, create=True) as first, open_storage(db_url, create=False) as second:
        assert start_or_resume(cfg, first, source="a.toml") is True
        _late_reader(second, monkeypatch)
        assert start_or_resume(cfg, second, source="b.toml") is False
        assert [c.name for c in second.list_campaigns()] == ["racing"]


def test_a_racing_start_with_another_config_is_still_refused(
        db_url: str, tiny_prior_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_storage(db_url, create=True) as first, open_storage(db_url, create=False) as second:
        start_or_resume(campaign_config("racing", tiny_prior_path, "http://127.0.0.1:9", db_url),
                        first, source="a.toml")
        _late_reader(second, monkeypatch)
        other = campaign_config("racing", tiny_prior_path, "http://127.0.0.1:9", db_url,
                                budget={"total": 16})
        with pytest.raises(CampaignStateError, match="already exists with a different config"):
            start_or_resume(other, second, source="b.toml")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    from pg_schemas import postgres_schema_url

    return postgres_schema_url(request.getfixturevalue("pg_schema"))
