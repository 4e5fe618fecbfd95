"""A check shared by the columnar-history tests: ``Storage.history_columns`` (or the driver's
columnar cache) holds exactly what the row-wise ``load_history`` holds, row for row."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from storage import History, HistoryColumns, NewCandidate, Storage
from storage.columns import STATUSES


def assert_columns_match(cols: HistoryColumns, history: History, fields: Sequence[str]) -> None:
    """Every part (completed, in flight, failed) of ``history`` equals the rows of ``cols`` with
    that status, in the same order: key, round, candidate, status, each field's value and noise
    (NaN exactly where the record has none) and the design (dtype and every element)."""
    assert cols.campaign == history.campaign
    assert len(cols) == len(history.completed) + len(history.in_flight) + len(history.failed)
    assert np.all(np.diff(cols.ids) > 0), "ids not increasing"
    for part, mask in (("completed", cols.completed), ("in_flight", cols.in_flight),
                       ("failed", cols.failed)):
        rows = np.flatnonzero(mask)
        records = getattr(history, part)
        assert [cols.key(int(i)) for i in rows] == [q.key for q in records], part
        for i, q in zip(rows, records, strict=True):
            assert STATUSES[cols.status[i]] == q.status, (part, q.key)
            assert (cols.round_index[i], cols.candidate_index[i]) == (q.round_index, q.candidate_index)
            for f in fields:
                for got, want in ((cols.values[f][i], (q.values or {}).get(f)),
                                  (cols.noise[f][i], (q.noise or {}).get(f))):
                    assert (np.isnan(got) if want is None else got == want), (part, q.key, f, got, want)
            if q.design is not None:
                assert cols.designs is not None
                assert cols.designs[i].dtype == q.design.dtype, (part, q.key)
                assert np.array_equal(cols.designs[i], q.design), (part, q.key)


def mixed_history(storage: Storage, name: str = "c1", seed: int = 0, dim: int = 5) -> list[str]:
    """Three rounds, every query status, full-precision random values; returns the keys."""
    rng = np.random.default_rng(seed)
    storage.create_campaign(name, {"mixed": True})
    keys: list[str] = []
    for r in range(3):
        cands = [NewCandidate(design=rng.normal(size=dim).astype(np.float32),
                              surrogate_mean=None if (r == 0 or i == 2) else float(rng.normal()))
                 for i in range(8)]
        keys += storage.record_round(name, r, alpha=0.5, candidates=cands, selected=list(range(7)),
                                     oracle_name="lab", summary={"tilted": r > 0}).query_keys
    for n, key in enumerate(keys):
        kind = n % 7
        if kind == 6:
            continue  # pending
        storage.transition_query(key, expected="pending", new="dispatched")
        if kind == 5:
            continue  # dispatched
        if kind == 4:
            storage.transition_query(key, expected="dispatched", new="running")
        elif kind == 3:
            storage.transition_query(key, expected="dispatched", new="failed", error=f"boom {n}")
        elif kind == 2:
            storage.transition_query(key, expected="dispatched", new="cancelled")
        else:  # succeeded: with noise (0), without (1); every 3rd one lacks "cost"
            values = {"y": float(rng.normal()) * 1e3}
            if n % 3:
                values["cost"] = float(rng.uniform())
            noise = {"y": float(rng.uniform()), "cost": 0.5} if kind == 0 else None
            storage.transition_query(key, expected="dispatched", new="succeeded", values=values,
                                     noise=noise)
    return keys
