"""A campaign's history as columns: numpy arrays per field, not one Python object per query.

What a driver trains on (designs, values, noise, status) for 100,000 queries, without building
100,000 records (17 fields, five timestamps each: most of a row-wise load's time):

1. ONE SELECT of narrow columns: query id, round and candidate index, a status code, the
   surrogate's prediction at selection, each requested result field (and its noise) as a typed
   float column (Postgres: ``(result_values ->> name)::float8``), and the design bytes;
2. on Postgres the rows come through a binary-format cursor (bytea as raw bytes, not hex: half of
   the transfer) and unsorted (the sort of 100,000 wide rows spilled to disk: ids are argsorted
   here instead); on SQLite the JSON text of values and noise is parsed by one ``json.loads``
   (exact doubles, whatever SQLite's own number parser does);
3. the designs of one dtype, shape and npy header are cut out of one joined buffer
   (``np.frombuffer``): one copy for all of them.

>>> cols = storage.history_columns("c1", fields=["yield"])   # doctest: +SKIP
>>> cols.X(), cols.Y(["yield"])                              # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.arrays import decode_array
from storage.errors import InvalidValue
from storage.models import QUERY_STATUSES, Candidate, OracleQuery, Round
from storage.queries import collector_paused
from storage.records import IN_FLIGHT
from storage.rounds import query_key
from storage.session import StorageBase

#: status code -> name (``HistoryColumns.status`` holds indices into this tuple)
STATUSES: tuple[str, ...] = QUERY_STATUSES
_SUCCEEDED = STATUSES.index("succeeded")
# code -> part, as lookup tables: a mask is one indexing (np.isin sorts the whole column)
_IN_FLIGHT = np.array([s in IN_FLIGHT for s in STATUSES])
_FAILED = np.array([s in ("failed", "cancelled") for s in STATUSES])


@dataclass(frozen=True, eq=False)
class HistoryColumns:
    """Every query of a campaign (or the part a call asked for) as arrays, in query-id order.

    Attributes:
        campaign: the campaign's name.
        ids: `n` query ids (int64, increasing); round_index, candidate_index: `n` (int64).
        status: `n` int8 codes into :data:`STATUSES`.
        surrogate_mean: `n` float64, the surrogate's prediction stored at selection (NaN: none).
        values, noise: field name -> `n` float64 (NaN where the query has no such value: not
            finished, or the field missing from its result).
        designs: `n x *design_shape` in the stored dtype, or None when not loaded.
    """

    campaign: str
    ids: np.ndarray
    round_index: np.ndarray
    candidate_index: np.ndarray
    status: np.ndarray
    surrogate_mean: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    noise: dict[str, np.ndarray] = field(default_factory=dict)
    designs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def completed(self) -> np.ndarray:
        """Mask of the succeeded queries (``History.completed``)."""
        return self.status == _SUCCEEDED

    @property
    def in_flight(self) -> np.ndarray:
        """Mask of the pending, dispatched and running queries (``History.in_flight``)."""
        return _IN_FLIGHT[self.status]

    @property
    def failed(self) -> np.ndarray:
        """Mask of the failed and cancelled queries (``History.failed``)."""
        return _FAILED[self.status]

    def key(self, row: int) -> str:
        """The idempotency key of row ``row`` (what ``Storage.record_round`` writes)."""
        return query_key(self.campaign, int(self.round_index[row]), int(self.candidate_index[row]))

    def take(self, rows: Any) -> HistoryColumns:
        """The rows ``rows`` (an index array or a boolean mask) as a new ``HistoryColumns``."""
        return HistoryColumns(
            campaign=self.campaign, ids=self.ids[rows], round_index=self.round_index[rows],
            candidate_index=self.candidate_index[rows], status=self.status[rows],
            surrogate_mean=self.surrogate_mean[rows],
            values={k: v[rows] for k, v in self.values.items()},
            noise={k: v[rows] for k, v in self.noise.items()},
            designs=None if self.designs is None else self.designs[rows])

    def X(self) -> np.ndarray:  # noqa: N802 — BoTorch's name, as History.X
        """Completed designs: `n x *design_shape` (`0 x 0` when none), as ``History.X``."""
        done = self.completed
        if not done.any():
            return np.zeros((0, 0))
        if self.designs is None:
            raise ValueError(f"history columns of campaign {self.campaign!r} were loaded without "
                             f"designs; call history_columns({self.campaign!r}) with with_design=True")
        return self.designs[done]

    def Y(self, objectives: Sequence[str]) -> np.ndarray:  # noqa: N802
        """Completed values: `n x m`, columns in the order of ``objectives`` (as ``History.Y``,
        NaN where a completed query lacks a field)."""
        done = self.completed
        out = np.empty((int(done.sum()), len(objectives)), dtype=np.float64)
        for j, name in enumerate(objectives):
            if name not in self.values:
                raise KeyError(f"history columns of campaign {self.campaign!r} hold no field "
                               f"{name!r} (loaded: {sorted(self.values)})")
            out[:, j] = self.values[name][done]
        return out


def empty_columns(campaign: str, fields: Sequence[str] = (), designs: np.ndarray | None = None
                  ) -> HistoryColumns:
    """A ``HistoryColumns`` with no rows (``designs``: an empty array to keep, if any)."""
    none = np.zeros(0, dtype=np.float64)
    return HistoryColumns(campaign=campaign, ids=np.zeros(0, dtype=np.int64),
                          round_index=np.zeros(0, dtype=np.int64),
                          candidate_index=np.zeros(0, dtype=np.int64),
                          status=np.zeros(0, dtype=np.int8), surrogate_mean=none,
                          values={f: none for f in fields}, noise={f: none for f in fields},
                          designs=designs)


class ColumnsMixin(StorageBase):
    """Campaign history as columns."""

    def history_columns(self, campaign: str, *, fields: Sequence[str] | None = None,
                        after_id: int = 0, ids: Sequence[int] = (),
                        with_design: bool = True) -> HistoryColumns:
        """The queries of ``campaign`` with id > ``after_id`` or among ``ids`` as columns (see
        the module docstring), in id order.

        Args:
            fields: result fields (objective names) to load as value and noise columns; None:
                every field any of these queries reported (one more aggregate statement on
                Postgres).
            after_id, ids: which queries (by default all); what an incremental reader asks for
                (``optimizer.campaign.history_arrays``).
            with_design: load the designs (else ``designs`` is None).
        """
        if isinstance(after_id, bool) or not isinstance(after_id, int):
            raise InvalidValue(f"after_id: expected an integer, got {after_id!r}")
        known = sorted({int(i) for i in ids})
        if fields is not None:
            fields = list(dict.fromkeys(fields))
            bad = [f for f in fields if not isinstance(f, str) or not f]
            if bad:
                raise InvalidValue(f"fields: expected non-empty field names, got {bad!r}")
        with self.session() as session, collector_paused():
            cid = self._campaign_id(session, campaign)
            which = [OracleQuery.campaign_id == cid]
            which.append(sa.or_(OracleQuery.id > after_id, OracleQuery.id.in_(known)) if known
                         else OracleQuery.id > after_id)
            if self.dialect == "postgresql":
                if fields is None:
                    fields = _pg_fields(session, which)
                return _pg_columns(session, campaign, which, fields, with_design)
            return _sqlite_columns(session, campaign, which, fields, with_design)

    def round_flags(self, campaign: str, *, after_index: int = -1) -> list[tuple[int, str, bool]]:
        """``(index, status, tilted)`` of the rounds with an index above ``after_index``, in
        index order: one narrow SELECT (``list_rounds`` also reads every query key: 100,000
        keys at the start of a 100,000-query campaign). ``tilted`` is the round summary's flag."""
        if isinstance(after_index, bool) or not isinstance(after_index, int):
            raise InvalidValue(f"after_index: expected an integer, got {after_index!r}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            rows = session.execute(
                sa.select(Round.round_index, Round.status, Round.summary["tilted"].as_boolean())
                .where(Round.campaign_id == cid, Round.round_index > after_index)
                .order_by(Round.round_index)).all()
        return [(int(i), str(st), bool(t)) for i, st, t in rows]


def _base_select(which: list[Any], extra: Sequence[Any], with_design: bool) -> sa.Select:
    status = sa.case({s: i for i, s in enumerate(STATUSES)}, value=OracleQuery.status, else_=-1)
    cols: list[Any] = [OracleQuery.id, Round.round_index, Candidate.candidate_index, status,
                       Candidate.surrogate_mean, *extra]
    if with_design:
        cols += [Candidate.design, Candidate.design_dtype,
                 sa.cast(Candidate.design_shape, sa.Text)]
    # no ORDER BY: sorting 100,000 rows with their designs spills to disk on Postgres
    return (sa.select(*cols).join(Candidate, OracleQuery.candidate_id == Candidate.id)
            .join(Round, Candidate.round_id == Round.id).where(*which))


def _pg_fields(session: Session, which: list[Any]) -> list[str]:
    """Every key of the rows' values and noise (Postgres: ``jsonb_object_keys``)."""
    # a set-returning function in the select list: one row per key (none for a NULL object)
    stmt = sa.union(*[sa.select(sa.func.jsonb_object_keys(col)).where(*which)
                      for col in (OracleQuery.result_values, OracleQuery.noise)])
    return sorted(str(k) for k in session.execute(stmt).scalars())


def _pg_columns(session: Session, campaign: str, which: list[Any], fields: Sequence[str],
                with_design: bool) -> HistoryColumns:
    extra = ([OracleQuery.result_values[f].as_float() for f in fields]
             + [OracleQuery.noise[f].as_float() for f in fields])
    stmt = _base_select(which, extra, with_design)
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    sql, params = str(compiled), compiled.params
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    try:
        # binary format: bytea arrives as bytes (text format sends hex, twice the size, decoded
        # per value), floats without text parsing. SQLAlchemy has no switch for it.
        with dbapi.cursor(binary=True) as cursor:  # type: ignore[attr-defined]
            # the engine's listeners see this read as any other (storage.read_counter, tests
            # that cut the connection mid-statement)
            conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.Error):  # mapped by the session scope as any driver error
            gone = (conn.dialect.is_disconnect(exc, dbapi, None)  # type: ignore[arg-type]
                    or bool(getattr(dbapi, "closed", False)))
            if gone:
                conn.invalidate(exc)  # a dead connection does not go back to the pool
            raise sa.exc.DBAPIError.instance(sql, params, exc, psycopg.Error,
                                             connection_invalidated=gone) from exc
        raise
    return _assemble(campaign, rows, fields, with_design, parsed=None)


def _sqlite_columns(session: Session, campaign: str, which: list[Any], fields: Sequence[str] | None,
                    with_design: bool) -> HistoryColumns:
    extra = [sa.cast(OracleQuery.result_values, sa.Text), sa.cast(OracleQuery.noise, sa.Text)]
    rows = session.connection().execute(_base_select(which, extra, with_design)).all()
    parts: list[str] = []
    for r in rows:
        parts.append(r[5] or "null")
        parts.append(r[6] or "null")
    parsed = json.loads("[" + ",".join(parts) + "]")
    if fields is None:
        fields = sorted({k for d in parsed if d for k in d})
    return _assemble(campaign, rows, fields, with_design, parsed=parsed)


def _assemble(campaign: str, rows: Sequence[Any], fields: Sequence[str], with_design: bool,
              parsed: list[Any] | None) -> HistoryColumns:
    n, m = len(rows), len(fields)
    if n == 0:
        return empty_columns(campaign, fields, np.zeros((0, 0)) if with_design else None)
    at = 5 + 2 * m if parsed is None else 5  # where the JSON texts / designs start
    # the numeric columns in one conversion (None -> NaN; ids and indices are exact in float64)
    num = np.array([r[:at] for r in rows], dtype=np.float64).reshape(n, at)
    order = np.argsort(num[:, 0], kind="stable")
    num = num[order]
    head = num[:, :4].astype(np.int64)
    if (head[:, 3] < 0).any():  # the CHECK constraint keeps this out; never guess a status
        raise InvalidValue(f"campaign {campaign!r}: query {int(head[head[:, 3] < 0][0, 0])} has a "
                           f"status outside {', '.join(STATUSES)}")
    if parsed is None:  # Postgres: typed columns 5 .. 5 + 2m
        values = {f: num[:, 5 + j].copy() for j, f in enumerate(fields)}
        noise = {f: num[:, 5 + m + j].copy() for j, f in enumerate(fields)}
    else:  # SQLite: values and noise dicts, parsed in one json.loads
        values = {f: _column(parsed[0::2], f)[order] for f in fields}
        noise = {f: _column(parsed[1::2], f)[order] for f in fields}
        at = 7
    designs = _designs(rows, order, at) if with_design else None
    return HistoryColumns(campaign=campaign, ids=head[:, 0], round_index=head[:, 1],
                          candidate_index=head[:, 2], status=head[:, 3].astype(np.int8),
                          surrogate_mean=num[:, 4].copy(), values=values, noise=noise,
                          designs=designs)


def _column(dicts: Sequence[Mapping[str, Any] | None], name: str) -> np.ndarray:
    return np.array([d.get(name, math.nan) if d else math.nan for d in dicts], dtype=np.float64)


def _designs(rows: Sequence[Any], order: np.ndarray, at: int) -> np.ndarray:
    """`n x *shape` designs of ``rows`` taken in ``order`` (design, dtype, shape text at
    columns ``at`` ..)."""
    blobs = [rows[i][at] for i in order]
    dtypes = {r[at + 1] for r in rows}
    shapes = {r[at + 2] for r in rows}
    blob = blobs[0]
    if (len(dtypes) == 1 and len(shapes) == 1 and blob[:6] == b"\x93NUMPY"
            and len(set(map(len, blobs))) == 1):
        dtype, shape_text = dtypes.pop(), shapes.pop()
        offset = (10 + int.from_bytes(blob[8:10], "little") if blob[6] == 1
                  else 12 + int.from_bytes(blob[8:12], "little"))
        header = bytes(blob[:offset])
        table = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), len(blob))
        if (table[:, :offset] == np.frombuffer(header, dtype=np.uint8)).all():
            shape = [int(s) for s in json.loads(shape_text)]
            return table[:, offset:].copy().view(np.dtype(dtype)).reshape(len(blobs), *shape)
    rows = [rows[i] for i in order]
    # mixed dtypes or shapes: one decode per design, stacked as History.X stacks them
    try:
        return np.stack([decode_array(r[at], r[at + 1], json.loads(r[at + 2])) for r in rows])
    except ValueError as exc:
        raise InvalidValue(f"designs of one campaign differ in shape ({exc}); they cannot be "
                           f"stacked as columns") from exc
