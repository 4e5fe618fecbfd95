"""A check shared by the columnar-history tests: ``Storage.history_columns`` (or the driver's
columnar cache) holds exactly what the row-wise ``load_history`` holds, row for row."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from storage import History, HistoryColumns
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
        assert [cols.key(i) for i in rows] == [q.key for q in records], part
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
