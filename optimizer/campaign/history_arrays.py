"""The driver's history as columns, kept up to date incrementally; the surrogate's training
arrays, the best so far and ``alpha = "auto"``'s inputs computed from it.

:class:`optimizer.campaign.history_cache.HistoryCache` keeps one ``QueryRecord`` per query:
building 100,000 of them took seconds at a resume. :class:`ColumnarHistoryCache` keeps the same
rows as arrays (``storage.HistoryColumns``: ids, round, status, values and noise per objective,
the surrogate's prediction, designs as one `n x *shape` array) and reads, per refresh,

1. the queries with an id above the highest seen and those in flight when last read (ONE
   ``Storage.history_columns`` call: its size is what changed, not the campaign's length; a
   query in flight that is gone was deleted with a discarded round);
2. the rounds: a ``(count, max index)`` aggregate, then ``(index, status, tilted)`` of the new
   rounds only (``Storage.round_flags``: no query keys), of all of them when some were discarded;
3. for ``alpha = "auto"``: the statuses of the rounds that were open (a handful) and the
   candidates of the latest plain-prior round once (they never change).

A finished query never changes again, so the columns equal a fresh
``Storage.history_columns`` at every refresh (tests/optimizer/campaign/test_history_arrays.py).

>>> cache = ColumnarHistoryCache(storage, "c1", fields=["yield"])   # doctest: +SKIP
>>> cache.refresh(); cache.columns().X()                          # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.campaign.auto_alpha import AutoAlphaInputs, OveroptGap, PriorSample
from optimizer.campaign.config_constraints import ConstraintConfig
from storage import HistoryColumns, QueryRecord
from storage.columns import empty_columns

Best = tuple[float | None, str | None]


class ColumnarHistoryCache:
    """The in-memory columnar history of campaign ``campaign`` (see the module docstring).

    Each :meth:`refresh` applies its reads only once they all succeeded (a refresh cut by a lost
    connection and retried ends in the same state).

    Args:
        storage: an open ``Storage``.
        campaign: the campaign's name.
        fields: result fields to keep as columns (the objectives); None: every field reported.
    """

    def __init__(self, storage: Any, campaign: str, fields: Sequence[str] | None = None) -> None:
        self.storage = storage
        self.campaign = campaign
        self.fields = None if fields is None else list(fields)
        self._cols: HistoryColumns = empty_columns(campaign, self.fields or ())
        self._open: list[int] = []  # ids in flight when last read
        self._last_id = 0
        self._round_count = 0
        self._round_top = -1
        self._round_discards = 0  # rounds discarded so far (a replaced top round)
        self._tilted: dict[int, bool] = {}  # round index -> tilted, every known round
        self._round_status: dict[int, str] = {}
        self._prior: PriorSample | None = None
        #: rows read by the last :meth:`refresh` (queries and rounds): what the bench reports
        self.rows_read = 0

    def refresh(self) -> None:
        """Read what changed since the last refresh (everything, the first time) and apply it."""
        self.rows_read = self._refresh_queries() + self._refresh_rounds()

    def _refresh_queries(self) -> int:
        changes = self.storage.history_columns(self.campaign, fields=self.fields,
                                               after_id=self._last_id, ids=self._open)
        gone = np.setdiff1d(np.asarray(self._open, dtype=np.int64), changes.ids)
        if len(changes) or len(gone):
            self._cols = merge_columns(self._cols, changes, drop=gone)
        self._open = [int(i) for i in changes.ids[changes.in_flight]]
        if len(changes):
            self._last_id = max(self._last_id, int(changes.ids.max()))
        return len(changes)

    def _refresh_rounds(self) -> int:
        count, top, discards = self.storage.round_tally_with_discards(self.campaign)
        read = 1
        if (count, top, discards) != (self._round_count, self._round_top, self._round_discards):
            new = self.storage.round_flags(self.campaign, after_index=self._round_top)
            read += len(new)
            if self._round_count + len(new) != count or discards != self._round_discards:
                # rounds were discarded (and maybe replaced): read them all
                new = self.storage.round_flags(self.campaign)
                read += len(new)
                self._tilted, self._round_status, self._prior = {}, {}, None
            for index, status, tilted in new:
                self._tilted[index] = tilted
                self._round_status[index] = status
            self._round_count, self._round_top, self._round_discards = count, top, discards
        return read

    def refresh_round_states(self) -> int:
        """Re-read the statuses of the rounds last seen open (what ``alpha = "auto"`` needs:
        which tilted rounds are complete); returns the rows read."""
        was_open = [i for i, s in self._round_status.items() if s == "open"]
        if not was_open:
            return 0
        states = self.storage.round_states(self.campaign, indices=was_open)
        for index, status in states:
            self._round_status[index] = status
        return len(states)

    def columns(self) -> HistoryColumns:
        """The history as of the last :meth:`refresh` (equal to ``history_columns(campaign)``
        read at that moment)."""
        return self._cols

    @property
    def next_round_index(self) -> int:
        """The index the next round gets (one above the highest recorded)."""
        return self._round_top + 1

    @property
    def tilted_rounds(self) -> tuple[int, ...]:
        """Indices of the rounds whose summary says they were tilted, in index order."""
        return tuple(sorted(i for i, t in self._tilted.items() if t))

    def round_sizes(self) -> dict[int, int]:
        """Number of queries of each round (the budget guard's failure fractions)."""
        index, counts = np.unique(self._cols.round_index, return_counts=True)
        return {int(i): int(n) for i, n in zip(index, counts, strict=True)}

    def prior_sample(self) -> PriorSample | None:
        """The latest plain-prior round's candidates (read once per such round)."""
        plain = [i for i, t in self._tilted.items() if not t]
        if not plain:
            self._prior = None
            return None
        latest = max(plain)
        if self._prior is None or self._prior.round_index != latest:
            self._prior = read_prior_sample(self.storage, self.campaign, latest)
        return self._prior

    def eligible_rounds(self) -> list[int]:
        """Complete tilted rounds (the over-optimization brake's candidates), in index order."""
        return sorted(i for i, t in self._tilted.items() if t and self._round_status.get(i) == "complete")


def read_prior_sample(storage: Any, campaign: str, index: int) -> PriorSample | None:
    """Round ``index``'s candidates as a :class:`PriorSample` (None if it has none)."""
    cands = storage.list_candidates(campaign, index)
    if not cands:
        return None
    lw = [c.log_weight for c in cands]
    return PriorSample(
        designs=np.stack([np.asarray(c.design, dtype=np.float64) for c in cands]),
        log_weights=(None if any(w is None or not math.isfinite(w) for w in lw)
                     else np.asarray(lw, dtype=np.float64)),
        round_index=index)


def merge_columns(table: HistoryColumns, changes: HistoryColumns, *, drop: np.ndarray) -> HistoryColumns:
    """``table`` with the rows of ``changes`` replacing those of the same id, the ids ``drop``
    removed, in id order (fields missing on one side are NaN there)."""
    keep = ~np.isin(table.ids, np.concatenate([changes.ids, np.asarray(drop, dtype=np.int64)]))
    old = table.take(keep)
    if len(old) == 0:
        return changes
    if len(changes) == 0:
        return old
    ids = np.concatenate([old.ids, changes.ids])
    order = np.argsort(ids, kind="stable")

    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[order]

    def fields(a: dict[str, np.ndarray], na: int, b: dict[str, np.ndarray], nb: int) -> dict[str, np.ndarray]:
        nan_a, nan_b = np.full(na, math.nan), np.full(nb, math.nan)
        return {f: cat(a.get(f, nan_a), b.get(f, nan_b)) for f in {**a, **b}}

    designs = None
    if old.designs is not None and changes.designs is not None:
        if old.designs.shape[1:] != changes.designs.shape[1:]:
            raise ValueError(f"campaign {table.campaign!r}: new designs of shape "
                             f"{changes.designs.shape[1:]} differ from the earlier "
                             f"{old.designs.shape[1:]}")
        designs = cat(old.designs, changes.designs)
    n, m = len(old), len(changes)
    return HistoryColumns(
        campaign=table.campaign, ids=ids[order], round_index=cat(old.round_index, changes.round_index),
        candidate_index=cat(old.candidate_index, changes.candidate_index),
        status=cat(old.status, changes.status),
        surrogate_mean=cat(old.surrogate_mean, changes.surrogate_mean),
        values=fields(old.values, n, changes.values, m), noise=fields(old.noise, n, changes.noise, m),
        designs=designs)


def training_arrays(cols: HistoryColumns, names: Sequence[str], signs: np.ndarray,
                    imported: Sequence[QueryRecord] = ()
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """``(X, Y, Yvar, X_pending, X_failed)`` of ``rounds.TrainingData`` from columns, equal to
    what ``rounds.training_data`` builds from the row-wise ``History``: the completed queries
    with every objective (then ``imported``'s), `Y` times ``signs``, `Yvar` only when every
    such row reports noise for every objective; designs as float64."""
    done = cols.completed.copy()
    for n in names:
        done &= ~np.isnan(cols.values[n]) if n in cols.values else False
    imp = [q for q in imported if q.values and all(n in q.values for n in names)]
    m = len(names)
    X_parts: list[np.ndarray] = []
    Y_parts: list[np.ndarray] = []
    noisy = True
    if done.any():
        X_parts.append(_designs(cols, done).astype(np.float64))
        Y_parts.append(np.stack([cols.values[n][done] for n in names], axis=1).reshape(-1, m))
        noisy = all(n in cols.noise and not np.isnan(cols.noise[n][done]).any() for n in names)
    if imp:
        X_parts.append(np.stack([np.asarray(q.design, dtype=np.float64) for q in imp]))
        Y_parts.append(np.array([[q.values[n] for n in names] for q in imp if q.values is not None],
                                dtype=np.float64))
        noisy = noisy and all(q.noise and all(n in q.noise for n in names) for q in imp)
    if not X_parts:
        return (np.zeros((0,)), np.zeros((0, m)), None, _stacked(cols, cols.in_flight),
                _stacked(cols, cols.failed))
    X = np.concatenate(X_parts) if len(X_parts) > 1 else X_parts[0]
    Y = (np.concatenate(Y_parts) if len(Y_parts) > 1 else Y_parts[0]) * signs
    Yvar = None
    if noisy:
        parts = []
        if done.any():
            parts.append(np.stack([cols.noise[n][done] for n in names], axis=1).reshape(-1, m))
        if imp:
            parts.append(np.array([[q.noise[n] for n in names] for q in imp],  # type: ignore[index]
                                  dtype=np.float64))
        Yvar = np.concatenate(parts)
    return X, Y, Yvar, _stacked(cols, cols.in_flight), _stacked(cols, cols.failed)


def _designs(cols: HistoryColumns, rows: np.ndarray) -> np.ndarray:
    if cols.designs is None:
        raise ValueError(f"history columns of campaign {cols.campaign!r} were loaded without "
                         f"designs; the surrogate needs them")
    return cols.designs[rows]


def _stacked(cols: HistoryColumns, rows: np.ndarray) -> np.ndarray:
    """Designs of ``rows`` as float64 (``0``-length 1-d when none, as the row-wise path)."""
    if not rows.any() or cols.designs is None:
        return np.zeros((0,))
    return cols.designs[rows].astype(np.float64)


def best_of_columns(cols: HistoryColumns, objective: str, maximize: bool, *,
                    constraints: Sequence[ConstraintConfig] = ()) -> Best:
    """The best value of ``objective`` among the succeeded (and, with ``constraints``, feasible)
    queries and its key (the first of equal ones, as ``driver.best_of`` over records):
    ``(None, None)`` when there is none."""
    if objective not in cols.values:
        return None, None
    ok = cols.completed.copy()
    for c in constraints:  # a missing output (NaN) is infeasible, as ``is_feasible`` says
        col = cols.values.get(c.name)
        ok &= False if col is None else np.asarray(c.slack(col)) <= 0
    v = np.where(ok, cols.values[objective], math.nan)
    if np.isnan(v).all():
        return None, None
    row = int(np.nanargmax(v) if maximize else np.nanargmin(v))
    return float(v[row]), cols.key(row)


def auto_inputs(cache: ColumnarHistoryCache, objective: str, maximize: bool) -> AutoAlphaInputs:
    """``alpha = "auto"``'s inputs from the cache, refreshed by the caller: the latest plain-prior
    round's candidates (read once) and the gap of the last complete tilted round with results
    that have predictions, computed from the columns exactly as
    ``auto_alpha.read_auto_inputs`` computes it from ``query_points`` (same rows, same order);
    reads only the statuses of the rounds that were open."""
    cache.refresh_round_states()
    return AutoAlphaInputs(prior=cache.prior_sample(),
                           gap=columns_gap(cache.columns(), cache.eligible_rounds(), objective,
                                           maximize))


def columns_gap(cols: HistoryColumns, eligible: Sequence[int], objective: str,
                maximize: bool) -> OveroptGap | None:
    """``auto_alpha.last_round_gap`` from columns: the scale is the std of every finite result
    (maximization orientation, in round then query order), the gap the mean of prediction −
    result over the last eligible round that has predictions."""
    if objective not in cols.values:
        return None
    sign = 1.0 if maximize else -1.0
    raw = cols.values[objective]
    rows = np.flatnonzero(cols.completed & np.isfinite(raw))
    rows = rows[np.lexsort((cols.ids[rows], cols.round_index[rows]))]
    v = sign * raw[rows]
    scale = float(np.std(v)) if len(v) > 1 else 0.0
    mean = cols.surrogate_mean[rows]
    with_pred = ~np.isnan(mean) & np.isin(cols.round_index[rows], np.asarray(eligible, dtype=np.int64))
    if not with_pred.any():
        return None
    last = int(cols.round_index[rows][with_pred].max())
    pick = with_pred & (cols.round_index[rows] == last)
    return OveroptGap(round_index=last, gap=float(np.mean(mean[pick] - v[pick])), scale=scale)
