"""The driver's columnar history (optimizer/campaign/history_arrays.py) on SQLite and Postgres:

- the incremental cache equals a fresh row-wise ``load_history`` after results, a new round and
  a discarded round, reading only what changed;
- the surrogate's training data (X, Y, Yvar, X_pending, X_failed) is identical built from the
  columns and from the row-wise history, with imported (warm-start) results and noise;
- the best so far equals ``driver.best_of`` over the records;
- ``alpha = "auto"``'s inputs equal ``auto_alpha.read_auto_inputs`` and their per-round reads
  do not grow with the campaign (statements and rows counted at the DBAPI cursor).
"""
from __future__ import annotations

import numpy as np

from optimizer.campaign.auto_alpha import read_auto_inputs
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.driver import best_of
from optimizer.campaign.history_arrays import ColumnarHistoryCache, auto_inputs, best_of_columns
from optimizer.campaign.rounds import training_data
from storage import NewCandidate, Storage
from storage.read_counter import ReadCounter

from columns_check import assert_columns_match, mixed_history

FIELDS = ["y", "cost"]


def _cfg(name: str, imports: tuple[str, ...] = (), alpha: object = 0.5) -> object:
    return parse_config({
        "name": name, "prior": {"name": "gmm-toy"},
        "oracle": {"kind": "http", "options": {"base_url": "http://127.0.0.1:9", "objectives": FIELDS}},
        "objectives": [{"name": "y"}, {"name": "cost", "direction": "minimize"}],
        "history": {"import_from": list(imports)}, "sampler": {"alpha": alpha}}, "t.toml")



def test_cache_follows_results_rounds_and_discards(storage: Storage) -> None:
    mixed_history(storage)
    cache = ColumnarHistoryCache(storage, "c1", fields=FIELDS)
    cache.refresh()
    assert cache.rows_read == 21 + 1 + 3  # every query, the round tally, every round
    assert_columns_match(cache.columns(), storage.load_history("c1"), FIELDS)
    cache.refresh()
    open_now = int(cache.columns().in_flight.sum())
    assert cache.rows_read == open_now + 1  # the queries in flight and the tally
    # results arrive (from another connection), a round is recorded, another one discarded
    history = storage.load_history("c1")
    with Storage.open(str(storage.engine.url.render_as_string(False))) as other:
        for q in history.in_flight[:3]:
            if q.status == "pending":
                other.transition_query(q.key, expected="pending", new="dispatched")
            other.transition_query(q.key, expected="dispatched" if q.status != "running" else "running",
                                   new="succeeded", values={"y": 0.25, "cost": 3.0})
    rng = np.random.default_rng(5)
    storage.record_round("c1", 3, alpha=0.5, candidates=[NewCandidate(rng.normal(size=5).astype(np.float32))
                                                         for _ in range(3)],
                         selected=[0, 2], oracle_name="lab", summary={"tilted": True})
    cache.refresh()
    assert_columns_match(cache.columns(), storage.load_history("c1"), FIELDS)
    assert cache.next_round_index == 4 and cache.tilted_rounds == (1, 2, 3)
    storage.record_round("c1", 4, alpha=0.5, candidates=[NewCandidate(np.zeros(5, np.float32))],
                         selected=[0], oracle_name="lab")
    cache.refresh()
    storage.discard_round("c1", 4, reason="test")
    cache.refresh()
    assert_columns_match(cache.columns(), storage.load_history("c1"), FIELDS)
    assert cache.next_round_index == 4
    assert cache.round_sizes() == {0: 7, 1: 7, 2: 7, 3: 2}


def test_training_data_identical_from_columns_and_rows(storage: Storage) -> None:
    mixed_history(storage, "src", seed=3)  # imported: a warm-start source
    mixed_history(storage, "c1", seed=4)
    cfg = _cfg("c1", imports=("src",))
    imported = storage.load_history("src").completed
    for imp in ((), imported):
        rows = training_data(storage.load_history("c1"), cfg, imp)  # type: ignore[arg-type]
        cols = training_data(storage.history_columns("c1", fields=FIELDS), cfg, imp)  # type: ignore[arg-type]
        for name in ("X", "Y", "X_pending", "X_failed"):
            a, b = getattr(rows, name), getattr(cols, name)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
        assert rows.Yvar is None and cols.Yvar is None  # not every row reports noise
        assert rows.n == cols.n > 0 and len(rows.X_pending) > 0 and len(rows.X_failed) > 0
    # every completed query noisy: Yvar both ways, minimized objective sign-flipped
    storage.create_campaign("noisy", {})
    keys = storage.record_round("noisy", 0, alpha=1.0, candidates=[
        NewCandidate(np.full(2, float(i))) for i in range(4)], selected=[0, 1, 2, 3],
        oracle_name="lab").query_keys
    for i, key in enumerate(keys[:3]):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": i / 3, "cost": 2.0 + i}, noise={"y": 0.1, "cost": 0.2 * i})
    rows = training_data(storage.load_history("noisy"), _cfg("noisy"))  # type: ignore[arg-type]
    cols = training_data(storage.history_columns("noisy", fields=FIELDS), _cfg("noisy"))  # type: ignore[arg-type]
    assert rows.Yvar is not None and cols.Yvar is not None and np.array_equal(rows.Yvar, cols.Yvar)
    assert np.array_equal(rows.Y, cols.Y) and cols.Y[1, 1] == -3.0
    assert np.array_equal(rows.X, cols.X) and np.array_equal(rows.X_pending, cols.X_pending)
    # no results at all: the same empty shapes
    storage.create_campaign("none", {})
    rows = training_data(storage.load_history("none"), _cfg("none"))  # type: ignore[arg-type]
    cols = training_data(storage.history_columns("none", fields=FIELDS), _cfg("none"))  # type: ignore[arg-type]
    for name in ("X", "Y", "X_pending", "X_failed"):
        assert getattr(rows, name).shape == getattr(cols, name).shape, name


def test_best_of_columns_equals_records(storage: Storage) -> None:
    mixed_history(storage)
    cols = storage.history_columns("c1", fields=FIELDS)
    history = storage.load_history("c1")
    for obj, direction in (("y", "maximize"), ("y", "minimize"), ("cost", "minimize")):
        cfg = parse_config({"name": "c1", "prior": {"name": "gmm-toy"}, "oracle": {"kind": "botorch"},
                            "objectives": [{"name": obj, "direction": direction}]}, "t.toml")
        assert best_of_columns(cols, obj, direction == "maximize") == best_of(history.completed, cfg)
    assert best_of_columns(storage.history_columns("c1", fields=["z"]), "z", True) == (None, None)


def test_constraints_identical_from_columns_and_rows(storage: Storage) -> None:
    """``[[constraints]]``: slack columns after the objectives and the best FEASIBLE result, the
    same from the driver's columns as from the row-wise history."""
    mixed_history(storage, "c1", seed=4)
    history = storage.load_history("c1")
    costs = sorted(q.values["cost"] for q in history.completed if q.values and "cost" in q.values)
    bound = costs[len(costs) // 2]  # about half the results infeasible
    for op in ("<=", ">="):
        cfg = parse_config({
            "name": "c1", "prior": {"name": "gmm-toy"},
            "oracle": {"kind": "http", "options": {"base_url": "http://127.0.0.1:9", "objectives": FIELDS}},
            "objectives": [{"name": "y"}], "constraints": [{"name": "cost", "op": op, "bound": bound}]},
            "t.toml")
        rows = training_data(history, cfg)  # type: ignore[arg-type]
        cols = training_data(storage.history_columns("c1", fields=FIELDS), cfg)  # type: ignore[arg-type]
        assert rows.Y.shape[1] == 2 and (rows.Y[:, 1] > 0).any() and (rows.Y[:, 1] <= 0).any()
        for name in ("X", "Y", "X_pending", "X_failed"):
            a, b = getattr(rows, name), getattr(cols, name)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), (op, name)
        best = best_of_columns(storage.history_columns("c1", fields=FIELDS), "y", True,
                               constraints=cfg.constraints)  # type: ignore[attr-defined]
        assert best == best_of(history.completed, cfg) and best[0] is not None


def _auto_campaign(storage: Storage, name: str, rounds: int, rng: np.random.Generator) -> None:
    """Round 0 plain (weighted samples), rounds 1.. tilted with predictions, three results and a
    failure each; the last round stays open."""
    storage.create_campaign(name, {})
    for r in range(rounds):
        cands = [NewCandidate(rng.normal(size=3), log_weight=float(-rng.exponential()),
                              surrogate_mean=None if r == 0 else float(rng.normal()))
                 for _ in range(6)]
        keys = storage.record_round(name, r, alpha=0.5, candidates=cands, selected=[0, 1, 2, 3],
                                    oracle_name="lab", summary={"tilted": r > 0}).query_keys
        for key in keys[:3]:
            storage.transition_query(key, expected="pending", new="dispatched")
            storage.transition_query(key, expected="dispatched", new="succeeded",
                                     values={"y": float(rng.normal()), "cost": 1.0})
        storage.transition_query(keys[3], expected="pending", new="failed", error="lab: no sample")
        if r < rounds - 1:
            storage.update_round(name, r, status="complete")


def _auto_round(storage: Storage, cache: ColumnarHistoryCache, name: str, cfg: object, index: int,
                rng: np.random.Generator) -> tuple[int, int]:
    """A new tilted round (two results; the previous round's queries in flight fail, and it is
    closed), the auto inputs checked
    against ``read_auto_inputs``; returns the statements and rows the cache's reads took."""
    for q in storage.load_history(name, with_design=False).in_flight:  # the last round's rest
        storage.transition_query(q.key, expected=q.status, new="failed", error="lab: timeout")
    storage.update_round(name, index - 1, status="complete")
    keys = storage.record_round(name, index, alpha=0.5, candidates=[
        NewCandidate(rng.normal(size=3), surrogate_mean=float(rng.normal())) for _ in range(4)],
        selected=[0, 1, 2, 3], oracle_name="lab", summary={"tilted": True}).query_keys
    for key in keys[:2]:
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": float(rng.normal()), "cost": 1.0})
    with ReadCounter(storage.engine) as reads:
        cache.refresh()
        got = auto_inputs(cache, "y", True)
    want = read_auto_inputs(storage, name, storage.list_rounds(name), cfg)
    assert got.gap == want.gap and got.gap is not None and got.gap.round_index == index - 1
    assert got.prior is not None and want.prior is not None
    assert got.prior.round_index == want.prior.round_index == 0
    assert np.array_equal(got.prior.designs, want.prior.designs)
    assert np.array_equal(got.prior.log_weights, want.prior.log_weights)  # type: ignore[arg-type]
    return reads.statements, reads.rows


def test_auto_inputs_equal_and_reads_bounded(storage: Storage) -> None:
    rng = np.random.default_rng(7)
    figures = {}
    for name, rounds in (("short", 3), ("long", 40)):
        _auto_campaign(storage, name, rounds, rng)
        cfg = _cfg(name, alpha="auto")
        cache = ColumnarHistoryCache(storage, name, fields=FIELDS)
        cache.refresh()
        first = auto_inputs(cache, "y", True)
        want = read_auto_inputs(storage, name, storage.list_rounds(name), cfg)
        assert first.gap == want.gap and first.gap is not None
        figures[name] = [_auto_round(storage, cache, name, cfg, rounds + i, rng) for i in range(3)]
    statements = {name: [s for s, _ in f] for name, f in figures.items()}
    assert statements["short"] == statements["long"], figures  # 13x longer: the same reads
    if storage.dialect == "postgresql":  # sqlite3's rowcount is -1 for a SELECT
        assert figures["short"] == figures["long"], figures
        assert max(r for _, r in figures["long"]) < 20, figures  # not ~160 queries + 40 rounds


def test_cache_sees_a_discarded_top_round_replaced_between_refreshes(storage: Storage) -> None:
    """Round 4 discarded and recorded again (now tilted) between two refreshes: the count and
    the top index are as before, the discard count is not, so the cache re-reads the rounds."""
    mixed_history(storage)
    storage.record_round("c1", 3, alpha=0.5, candidates=[NewCandidate(np.ones(5, np.float32))],
                         selected=[0], oracle_name="lab", summary={"tilted": True})
    storage.record_round("c1", 4, alpha=0.5, candidates=[NewCandidate(np.zeros(5, np.float32))],
                         selected=[0], oracle_name="lab", summary={"tilted": False})
    cache = ColumnarHistoryCache(storage, "c1", fields=FIELDS)
    cache.refresh()
    assert cache.tilted_rounds == (1, 2, 3)
    storage.discard_round("c1", 4, reason="test")
    storage.record_round("c1", 4, alpha=0.5, candidates=[NewCandidate(np.full(5, 2.0, np.float32))
                                                         for _ in range(2)],
                         selected=[0, 1], oracle_name="lab", summary={"tilted": True})
    cache.refresh()
    assert cache.tilted_rounds == (1, 2, 3, 4)
    assert cache.round_sizes()[4] == 2
    assert_columns_match(cache.columns(), storage.load_history("c1"), FIELDS)
