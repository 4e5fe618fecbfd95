"""``Storage.history_columns`` (storage/columns.py) on SQLite and Postgres: the columns equal the
row-wise ``load_history`` for a history with completed (noisy and not, a field missing),
failed, cancelled and in-flight queries over several rounds; the incremental form (``after_id``,
``ids``) returns exactly the rows asked for; field discovery; the surrogate's predictions."""
from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from storage import DatabaseUnreachable, InvalidValue, NewCandidate, NotFound, Storage
from storage.columns import STATUSES

from columns_check import assert_columns_match, mixed_history


def test_columns_equal_row_history(storage: Storage) -> None:
    mixed_history(storage)
    history = storage.load_history("c1")
    cols = storage.history_columns("c1", fields=["y", "cost"])
    assert_columns_match(cols, history, ["y", "cost"])
    assert cols.completed.sum() == len(history.completed) > 0 and len(history.in_flight) > 0
    assert {STATUSES[s] for s in cols.status} == set(STATUSES)  # every status is covered
    assert np.array_equal(cols.X(), history.X()) and cols.X().dtype == np.float32
    ys = cols.Y(["y"])
    assert np.array_equal(ys, history.Y(["y"]))
    # every field reported, found without being named: values and noise keys alike
    found = storage.history_columns("c1")
    assert sorted(found.values) == ["cost", "y"]
    assert_columns_match(found, history, ["y", "cost"])
    # without designs: the same rows, no design
    bare = storage.history_columns("c1", fields=["y"], with_design=False)
    assert bare.designs is None and np.array_equal(bare.ids, cols.ids)
    with pytest.raises(ValueError, match="without designs"):
        bare.X()


def test_surrogate_predictions_and_incremental_rows(storage: Storage) -> None:
    mixed_history(storage)
    cols = storage.history_columns("c1", fields=["y"])
    means = {(c.round_index, c.index): c.surrogate_mean
             for r in range(3) for c in storage.list_candidates("c1", r)}
    for i in range(len(cols)):
        want = means[(int(cols.round_index[i]), int(cols.candidate_index[i]))]
        got = cols.surrogate_mean[i]
        assert np.isnan(got) if want is None else got == want
    # rows with id > after_id and those among ids: exactly those, in id order
    cut = int(cols.ids[10])
    picked = [int(cols.ids[2]), int(cols.ids[5])]
    part = storage.history_columns("c1", fields=["y"], after_id=cut, ids=picked)
    want_ids = np.concatenate([cols.ids[[2, 5]], cols.ids[cols.ids > cut]])
    assert np.array_equal(part.ids, want_ids)
    rows = np.searchsorted(cols.ids, part.ids)
    assert part.designs is not None and cols.designs is not None
    assert np.array_equal(part.designs, cols.designs[rows])
    assert np.array_equal(part.values["y"], cols.values["y"][rows], equal_nan=True)
    assert len(storage.history_columns("c1", after_id=int(cols.ids.max()))) == 0


def test_columns_edge_cases(storage: Storage) -> None:
    storage.create_campaign("empty", {})
    cols = storage.history_columns("empty", fields=["y"])
    assert len(cols) == 0 and cols.X().shape == (0, 0) and cols.Y(["y"]).shape == (0, 1)
    with pytest.raises(NotFound, match="nope"):
        storage.history_columns("nope")
    with pytest.raises(InvalidValue, match="after_id"):
        storage.history_columns("empty", after_id="3")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="fields"):
        storage.history_columns("empty", fields=[""])
    mixed_history(storage, "c2")
    with pytest.raises(KeyError, match="no field 'z'"):
        storage.history_columns("c2", fields=["y"]).Y(["z"])


def test_round_flags(storage: Storage) -> None:
    mixed_history(storage)
    storage.update_round("c1", 1, status="complete")
    storage.update_round("c1", 2, status="failed")
    want = [(r.index, r.status, bool((r.summary or {}).get("tilted")))
            for r in storage.list_rounds("c1")]
    assert storage.round_flags("c1") == want == [(0, "open", False), (1, "complete", True),
                                                 (2, "failed", True)]
    assert storage.round_flags("c1", after_index=0) == want[1:]
    assert storage.round_states("c1", indices=[2, 0]) == [(0, "open"), (2, "failed")]


def test_mixed_design_dtypes_stack_as_history_does(storage: Storage) -> None:
    storage.create_campaign("mix", {})
    designs = [np.arange(3, dtype=np.float32), np.array([0.1, 0.2, 0.3]), np.ones(3, np.float32)]
    keys = storage.record_round("mix", 0, alpha=1.0, candidates=[NewCandidate(d) for d in designs],
                                selected=[0, 1, 2], oracle_name="lab").query_keys
    for key in keys:
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded", values={"y": 1.0})
    cols, history = storage.history_columns("mix", fields=["y"]), storage.load_history("mix")
    assert cols.X().dtype == history.X().dtype == np.float64  # promoted, as np.stack does
    assert np.array_equal(cols.X(), history.X())


def test_lost_connection_is_database_unreachable(storage: Storage) -> None:
    """Postgres reads the columns through a raw binary cursor: a connection lost under it is
    reported as any other (DatabaseUnreachable), and the next call works on a fresh one."""
    if storage.dialect != "postgresql":
        pytest.skip("the raw cursor path is Postgres's")
    mixed_history(storage)
    admin = sa.create_engine(storage.engine.url)

    def cut(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "design_dtype" in statement:  # the columnar SELECT
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with admin.connect() as other:
                other.execute(sa.text(f"SELECT pg_terminate_backend({pid})"))

    sa.event.listen(storage.engine, "before_cursor_execute", cut)
    try:
        with pytest.raises(DatabaseUnreachable):
            storage.history_columns("c1", fields=["y"])
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", cut)
        admin.dispose()
    assert len(storage.history_columns("c1", fields=["y"])) == 21
