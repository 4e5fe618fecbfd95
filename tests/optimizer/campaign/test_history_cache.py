"""The driver's incremental history (optimizer/campaign/history_arrays.py, columns; and the
row-wise optimizer/campaign/history_cache.py the imports use) on SQLite and Postgres:
it equals a fresh ``load_history`` after every pass of a real campaign (results stored by another
connection, a resume by a fresh driver), and the driver's per-round reads do not grow with the
campaign's length (statements and rows counted at the DBAPI cursor)."""
from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest
import sqlalchemy as sa

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.driver import CampaignDriver
from optimizer.campaign.history_cache import HistoryCache
from optimizer.campaign.service import _one_driver, open_storage
from oracles.factory import build_oracle
from storage import History, HistoryColumns, NewCandidate, QueryRecord, Storage
from storage.read_counter import ReadCounter
from storage.migrate import upgrade

from columns_check import assert_columns_match

_FIELDS = ("key", "campaign", "round_index", "candidate_index", "oracle_name", "status", "job_id",
           "attempts", "values", "noise", "error", "lease_owner", "lease_expires_at",
           "created_at", "updated_at", "dispatched_at", "finished_at")


def _same_record(a: QueryRecord, b: QueryRecord) -> bool:
    if any(getattr(a, f) != getattr(b, f) for f in _FIELDS):
        return False
    if a.design is None or b.design is None:
        return a.design is b.design
    return a.design.dtype == b.design.dtype and np.array_equal(a.design, b.design)


def assert_same_history(cached: History, fresh: History) -> None:
    for part in ("completed", "in_flight", "failed"):
        ours, theirs = getattr(cached, part), getattr(fresh, part)
        assert [q.key for q in ours] == [q.key for q in theirs], part
        bad = [q.key for q, f in zip(ours, theirs, strict=True) if not _same_record(q, f)]
        assert not bad, f"{part}: {bad} differ from a fresh load_history"


def _check(driver: CampaignDriver, storage: Storage) -> None:
    driver.history.refresh()
    assert_columns_match(driver.history.columns(), storage.load_history(driver.name),
                         [o.name for o in driver.config.objectives])
    rounds = storage.list_rounds(driver.name)
    assert driver.history.next_round_index == (rounds[-1].index + 1 if rounds else 0)
    assert driver.history.tilted_rounds == tuple(
        r.index for r in rounds if (r.summary or {}).get("tilted"))
    assert driver.history.round_sizes() == {r.index: len(r.query_keys) for r in rounds
                                            if r.query_keys}


@pytest.mark.slow  # a whole campaign on Ray (two drivers): ~40 s on 2 cores
def test_cache_equals_fresh_history_every_pass(ray_session: str, tiny_prior_path: str, lab,
                                               db_url: str, make_config) -> None:
    cfg = make_config("hc", tiny_prior_path, lab.url, db_url,
                      budget={"q": 2, "max_in_flight": 4, "total": 10, "poll_interval_s": 0.01})
    storage = open_storage(db_url, create=True)
    storage.create_campaign("hc", cfg.to_json_dict(), budget=10)
    other = Storage.open(db_url)  # another process's connection (an operator, a lab)
    passes = 0
    try:
        for driver_no in range(2):  # the second driver is a resume: a fresh, empty cache
            with ExitStack() as runtime:
                driver, pools = _one_driver(cfg, storage, runtime, progress=None, on_event=None,
                                            version=storage.current_config_version("hc"))
                try:
                    for _ in range(60):
                        status = driver.run(once=True)
                        passes += 1
                        _check(driver, storage)
                        if driver_no == 0 and status.rounds >= 2:
                            break
                        if status.status == "completed":
                            break
                        if driver_no == 0 and status.rounds == 1 and status.in_flight:
                            # an operator cancels a query in flight from another connection
                            key = storage.load_history("hc").in_flight[0].key
                            current = other.get_query(key, with_design=False).status
                            assert other.transition_query(key, expected=current, new="cancelled",
                                                          error="operator: cancelled in a test")
                            _check(driver, storage)
                finally:
                    driver.close()
                    for pool in pools:
                        pool.shutdown()
        assert status.status == "completed", status
        final = storage.load_history("hc")
        assert len(final.completed) + len(final.failed) == 10 and len(final.failed) == 1
        assert passes > 4
    finally:
        other.close()
        storage.close()


def _seed(storage: Storage, name: str, rounds: int, q: int, rng: np.random.Generator) -> None:
    """A campaign with ``rounds`` finished rounds of ``q`` queries each (results written with
    one UPDATE: setup, not what is measured)."""
    storage.create_campaign(name, {"seed": True}, budget=10 * rounds * q)
    for r in range(rounds):
        storage.record_round(name, r, alpha=1.0,
                             candidates=[NewCandidate(x) for x in rng.normal(size=(q, 3))],
                             selected=list(range(q)), oracle_name="lab",
                             summary={"tilted": r > 0})
        storage.update_round(name, r, status="complete")
    with storage.session() as session:
        cid = storage._campaign_id(session, name)
        session.execute(sa.text("UPDATE oracle_query SET status = 'succeeded', result_values = "
                                "'{\"y\": 1.5}' WHERE campaign_id = :cid"), {"cid": cid})


def _one_round_of_reads(storage: Storage, driver: CampaignDriver, index: int,
                        rng: np.random.Generator) -> tuple[int, int]:
    """What the driver reads around one round (the inputs of the next round, the closing of
    rounds, the status) after a new round of 4 queries was recorded and 2 of them finished."""
    keys = storage.record_round(driver.name, index, alpha=1.0,
                                candidates=[NewCandidate(x) for x in rng.normal(size=(4, 3))],
                                selected=[0, 1, 2, 3], oracle_name="lab",
                                summary={"tilted": True}).query_keys
    for key in keys[:2]:
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded", values={"y": 2.0})
    with ReadCounter(storage.engine) as reads:
        inputs = driver._round_inputs()
        driver._close_rounds()
        driver._status()
    assert inputs.index == index + 1 and inputs.tilted_before == index  # next index; tilted before it
    assert_columns_match(inputs.history, storage.load_history(driver.name), ["y"])
    return reads.statements, reads.rows


def test_reads_per_round_do_not_grow_with_campaign_length(db_url: str, lab) -> None:
    upgrade(db_url)
    rng = np.random.default_rng(0)
    figures = {}
    with Storage.open(db_url) as storage:
        for name, rounds in (("short", 5), ("long", 60)):  # 100 vs 1,200 queries of 20 a round
            _seed(storage, name, rounds, 20, rng)
            cfg = parse_config({
                "name": name, "prior": {"name": "gmm-toy"}, "objectives": [{"name": "y"}],
                "oracle": {"kind": "http", "options": {"base_url": lab.url, "objectives": ["y"]}},
                "storage": {"url": db_url}}, "test")
            driver = CampaignDriver(cfg, storage, build_oracle("http", {
                "base_url": lab.url, "objectives": ["y"]}))
            first = driver._round_inputs()  # a fresh driver reads everything once
            assert isinstance(first.history, HistoryColumns)  # the driver keeps columns
            assert first.history.completed.sum() == 20 * rounds
            figures[name] = [_one_round_of_reads(storage, driver, rounds + i, rng)
                             for i in range(3)]
            driver.close()
    statements = {name: [s for s, _ in f] for name, f in figures.items()}
    assert statements["short"] == statements["long"], figures  # 12x longer: the same reads
    assert len(set(statements["long"][1:])) == 1, figures  # and the same every round
    if storage.dialect == "postgresql":  # sqlite3's rowcount is -1 for a SELECT
        assert figures["short"] == figures["long"], figures
        assert max(r for _, r in figures["long"]) < 100, figures  # not ~1,200


def test_cache_follows_discarded_rounds_and_refresh_reads_little(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    rng = np.random.default_rng(1)
    with Storage.open(url) as storage:
        _seed(storage, "c", 3, 5, rng)
        cache = HistoryCache(storage, "c")
        cache.refresh()
        assert cache.rows_read == 15 + 1 + 3  # every query, the round tally, every round
        cache.refresh()
        assert cache.rows_read == 1  # nothing changed: the tally only
        storage.record_round("c", 3, alpha=1.0, candidates=[NewCandidate(np.zeros(3))],
                             selected=[0], oracle_name="lab", summary={"tilted": True})
        storage.record_round("c", 4, alpha=1.0, candidates=[NewCandidate(np.ones(3))],
                             selected=[0], oracle_name="lab")
        cache.refresh()
        assert cache.next_round_index == 5 and cache.tilted_rounds == (1, 2, 3)
        storage.discard_round("c", 4, reason="test")  # its pending query goes with it
        cache.refresh()
        assert_same_history(cache.history(), storage.load_history("c"))
        assert cache.next_round_index == 4 and cache.round_sizes() == {0: 5, 1: 5, 2: 5, 3: 1}
