"""Oracle queries: conditional transitions, job ids, leases and safe claiming of pending work.

Every write is `UPDATE … WHERE idempotency_key = :key AND status = :expected`: the writer whose
UPDATE matches wins; a stale writer (the status moved on) matches no row and gets ``False``.
Leases are timed by the database clock, never by a host's clock.
"""
from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.arrays import decode_array
from storage.clock import db_now, db_now_plus
from storage.errors import InvalidValue, JobIdConflict, NotFound
from storage.lifecycle import check_objectives, check_transition
from storage.models import QUERY_STATUSES, QUERY_TABLE, Campaign, Candidate, OracleQuery, Round
from storage.records import IN_FLIGHT, TERMINAL, QueryPoint, QueryRecord
from storage.session import StorageBase

_QUERY = OracleQuery.__table__.c
# In the order of QueryRecord's fields: a row becomes a record positionally. The JSON columns
# come back as their text and are parsed together in one json.loads per batch (see
# :func:`to_records`): per-value JSON decoding by the driver was most of a 100,000-query
# history load (bench/storage_bench.py).
_COLUMNS = (
    _QUERY.idempotency_key, Campaign.name.label("campaign"), Round.round_index,
    Candidate.candidate_index, _QUERY.oracle_name, _QUERY.status, _QUERY.external_job_id,
    _QUERY.attempts, sa.cast(_QUERY.result_values, sa.Text).label("result_values"),
    sa.cast(_QUERY.noise, sa.Text).label("noise"), _QUERY.error, _QUERY.lease_owner,
    _QUERY.lease_expires_at, _QUERY.created_at, _QUERY.updated_at, _QUERY.dispatched_at,
    _QUERY.finished_at,
)
_VALUES, _NOISE, _DESIGN_AT = 8, 9, len(_COLUMNS)
_DESIGN = (Candidate.design, Candidate.design_dtype,
           sa.cast(Candidate.design_shape, sa.Text).label("design_shape"))


def query_select(*, with_design: bool) -> sa.Select:
    """SELECT of query columns with campaign name, round and candidate index (and the design).

    Plain columns, not ORM entities: building 10,000 records this way is several times faster.
    Turn its rows into records with :func:`to_records` (JSON columns come back as text).
    """
    cols: tuple[Any, ...] = _COLUMNS + (_DESIGN if with_design else ())
    return (
        sa.select(*cols)
        .join(Candidate, OracleQuery.candidate_id == Candidate.id)
        .join(Round, Candidate.round_id == Round.id)
        .join(Campaign, OracleQuery.campaign_id == Campaign.id)
    )


def to_records(rows: Sequence[Any]) -> list[QueryRecord]:
    """Result rows of :func:`query_select` as :class:`QueryRecord` s, decoded in bulk.

    1. every row's values and noise (JSON text) are parsed by ONE ``json.loads`` of a JSON
       array (300,000 separate loads cost seconds at 100,000 queries);
    2. designs of one dtype, shape and npy header (a campaign's usual case) are cut out of one
       joined buffer as rows of one array (see :func:`decode_designs`).
    """
    if not rows:
        return []
    with collector_paused():
        return _to_records(rows)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while 10,000s of records are built: each full
    collection it would trigger walks every object of the process (a driver holds millions:
    torch, Ray), which made a 100,000-query load super-linear. Records hold no cycles."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _to_records(rows: Sequence[Any]) -> list[QueryRecord]:
    parts: list[str] = []
    for r in rows:
        parts.append(r[_VALUES] or "null")
        parts.append(r[_NOISE] or "null")
    parsed = json.loads("[" + ",".join(parts) + "]")
    with_design = len(rows[0]) > _DESIGN_AT
    designs = decode_designs(rows) if with_design else [None] * len(rows)
    return [QueryRecord(*[*r[:_VALUES], parsed[2 * i], parsed[2 * i + 1],
                          *r[_NOISE + 1:_DESIGN_AT], designs[i]])
            for i, r in enumerate(rows)]


def to_record(row: Any) -> QueryRecord:
    """A result row of :func:`query_select` as a :class:`QueryRecord`."""
    return to_records([row])[0]


def decode_designs(rows: Sequence[Any]) -> list[np.ndarray | None]:
    """The designs of rows of ``query_select(with_design=True)``, in row order (None where the
    row's design columns are NULL).

    Blobs with the same dtype, shape, length and npy header size are joined and cut as one
    ``n x *shape`` array (each design a row of it: one copy, no per-row header parse); any
    other blob goes through :func:`decode_array`.
    """
    out: list[Any] = [None] * len(rows)
    groups: dict[tuple[str, str, int], list[int]] = {}
    shapes: dict[str, list[int]] = {}
    at = _DESIGN_AT
    for i, r in enumerate(rows):
        if r[at] is None:  # not asked for on this row (Storage.history_changes)
            continue
        if r[at + 1] is None or r[at + 2] is None or r[at][:6] != b"\x93NUMPY":
            out[i] = decode_array(r[at])
            continue
        groups.setdefault((r[at + 1], r[at + 2], len(r[at])), []).append(i)
    for (dtype, shape_text, size), members in groups.items():
        # one writer (encode_array), one dtype and shape, one length: one header size
        blob = rows[members[0]][at]
        offset = (10 + int.from_bytes(blob[8:10], "little") if blob[6] == 1
                  else 12 + int.from_bytes(blob[8:12], "little"))
        if shape_text not in shapes:
            shapes[shape_text] = [int(n) for n in json.loads(shape_text)]
        joined = np.frombuffer(b"".join([rows[i][_DESIGN_AT] for i in members]), dtype=np.uint8)
        body = joined.reshape(len(members), size)[:, offset:].copy()  # owns its memory, writable
        block = body.view(np.dtype(dtype)).reshape(len(members), *shapes[shape_text])
        # 0-d designs: block[j, ...] keeps them arrays (block[j] would be a numpy scalar)
        views = list(block) if block.ndim > 1 else [block[j, ...] for j in range(len(members))]
        for i, view in zip(members, views, strict=True):
            out[i] = view
    return out


class QueriesMixin(StorageBase):
    """Oracle query rows."""

    def transition_query(
        self,
        key: str,
        *,
        expected: str,
        new: str,
        job_id: str | None = None,
        values: Mapping[str, float] | None = None,
        noise: Mapping[str, float] | None = None,
        error: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Move query ``key`` from ``expected`` to ``new`` if, and only if, it is still ``expected``.

        `UPDATE oracle_query SET status = :new … WHERE idempotency_key = :key AND status = :expected`

        1. the edge must be in the lifecycle (:mod:`storage.lifecycle`), else InvalidTransition;
        2. ``succeeded`` needs ``values`` (finite), ``failed`` needs ``error`` (kept in full);
        3. ``pending → dispatched`` counts an attempt; terminal states stamp ``finished_at`` and
           drop the lease; ``owner`` (if given) must hold the lease;
        4. a stored job id is never overwritten by a different one (JobIdConflict).

        Returns:
            True if this writer won; False if the query was no longer ``expected`` (a stale
            writer) or ``owner`` does not hold its lease.

        >>> storage.transition_query("c1:0:3", expected="pending", new="dispatched")
        True
        """
        check_transition(key, expected, new)
        vals = check_objectives(values, key=key, field="values")
        noise_vals = check_objectives(noise, key=key, field="noise")
        if new == "succeeded" and vals is None:
            raise InvalidValue(f"query {key!r}: a succeeded query needs values (objective -> number)")
        if new != "succeeded" and vals is not None:
            raise InvalidValue(f"query {key!r}: values are only stored with new='succeeded'")
        if new == "failed" and not (isinstance(error, str) and error.strip()):
            raise InvalidValue(f"query {key!r}: a failed query needs its error text (the reason)")
        changes, edge_where = lifecycle_changes(key, expected, new)
        where = [OracleQuery.idempotency_key == key, *edge_where]
        if job_id is not None:
            job_id = _check_job_id(key, job_id)
            changes["external_job_id"] = job_id
            where.append(sa.or_(OracleQuery.external_job_id.is_(None),
                                OracleQuery.external_job_id == job_id))
        if vals is not None:
            changes["result_values"] = vals
        if noise_vals is not None:
            changes["noise"] = noise_vals
        if error is not None:
            changes["error"] = str(error)
        if owner is not None:
            where.append(OracleQuery.lease_owner == owner)
        with self.session() as session:
            won = session.execute(
                sa.update(QUERY_TABLE).where(*where).values(**changes)
                .returning(OracleQuery.id, OracleQuery.campaign_id)
            ).first()
            if won is None:
                current = self._query_row(session, key)
                if (job_id is not None and current.status == expected
                        and current.external_job_id not in (None, job_id)):
                    raise JobIdConflict(_job_conflict(key, current.external_job_id, job_id))
                return False
            payload = {"key": key, "from": expected, "to": new}
            if job_id is not None:
                payload["job_id"] = job_id
            if error is not None:
                payload["error"] = str(error)[:500]
            self._log(session, won.campaign_id, "query.transition", payload)
            return True

    def record_job_id(self, key: str, job_id: str) -> None:
        """Store the oracle's job id as soon as it is known (idempotent for the same id).

        Raises:
            JobIdConflict: a different job id is already stored for this query.
            NotFound: no query has this key.
        """
        job_id = _check_job_id(key, job_id)
        with self.session() as session:
            updated = session.execute(
                sa.update(QUERY_TABLE)
                .where(OracleQuery.idempotency_key == key, OracleQuery.external_job_id.is_(None))
                .values(external_job_id=job_id, updated_at=db_now())
                .returning(OracleQuery.campaign_id)
            ).first()
            if updated is None:
                current = self._query_row(session, key)
                if current.external_job_id != job_id:
                    raise JobIdConflict(_job_conflict(key, current.external_job_id, job_id))
                return
            self._log(session, updated.campaign_id, "query.job_id", {"key": key, "job_id": job_id})

    def count_submit_attempt(self, key: str, *, max_attempts: int) -> int | None:
        """Count one more submission of an in-flight query, unless it has had ``max_attempts``.

        `UPDATE … SET attempts = attempts + 1 WHERE key = :key AND status IN ('dispatched',
        'running') AND attempts < :max`: counted in the database BEFORE the submit, so a driver
        killed and restarted in a loop cannot resubmit one key without bound.

        Returns:
            The new number of submissions, or None when the query is no longer in flight or has
            already had ``max_attempts`` (read :meth:`get_query` to tell which).
        """
        with self.session() as session:
            row = session.execute(
                sa.update(OracleQuery)
                .where(OracleQuery.idempotency_key == key,
                       OracleQuery.status.in_(["dispatched", "running"]),
                       OracleQuery.attempts < int(max_attempts))
                .values(attempts=OracleQuery.attempts + 1, updated_at=db_now())
                .returning(OracleQuery.attempts)
            ).first()
            return None if row is None else int(row.attempts)

    def overdue_queries(self, campaign: str, *, age_s: float) -> list[str]:
        """Keys of the campaign's queries at the oracle (``dispatched`` / ``running``) that were
        first dispatched more than ``age_s`` seconds ago, by the database clock (no host clock
        skew), oldest first."""
        if not age_s > 0:
            raise InvalidValue(f"age_s: must be > 0, got {age_s!r}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            return list(session.scalars(
                sa.select(OracleQuery.idempotency_key)
                .where(OracleQuery.campaign_id == cid,
                       OracleQuery.status.in_(["dispatched", "running"]),
                       OracleQuery.dispatched_at < db_now_plus(-float(age_s)))
                .order_by(OracleQuery.id)
            ).all())

    def claim_queries(
        self,
        campaign: str,
        *,
        owner: str,
        statuses: Sequence[str] = ("pending",),
        limit: int = 1,
        lease_seconds: float = 300.0,
    ) -> list[QueryRecord]:
        """Lease up to ``limit`` unleased (or lease-expired) queries in ``statuses`` to ``owner``.

        Postgres: `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n)`, so several
        processes claim disjoint sets without waiting on each other. SQLite: every transaction
        starts with ``BEGIN IMMEDIATE``, so claims are serialised. The lease expiry is
        `database now + lease_seconds`.

        Returns:
            The claimed queries, oldest first, with their designs.
        """
        bad = [s for s in statuses if s not in QUERY_STATUSES or s in TERMINAL]
        if bad or not statuses:
            raise InvalidValue(f"statuses: {list(statuses)!r} must be non-empty and among "
                               f"pending, dispatched, running")
        if not isinstance(limit, int) or limit < 1:
            raise InvalidValue(f"limit: expected an integer >= 1, got {limit!r}")
        if not owner or len(owner) > 200:
            raise InvalidValue(
                f"owner: expected a non-empty name of at most 200 characters, got {owner!r}"
            )
        if not lease_seconds > 0:
            raise InvalidValue(f"lease_seconds: must be > 0, got {lease_seconds!r}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            free = (
                sa.select(OracleQuery.id)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status.in_(list(statuses)),
                       sa.or_(OracleQuery.lease_expires_at.is_(None),
                              OracleQuery.lease_expires_at < db_now()))
                .order_by(OracleQuery.id).limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = session.scalars(
                sa.update(QUERY_TABLE).where(OracleQuery.id.in_(free.scalar_subquery()))
                .values(lease_owner=owner, lease_expires_at=db_now_plus(lease_seconds),
                        updated_at=db_now())
                .returning(OracleQuery.id)
            ).all()
            if not ids:
                return []
            rows = session.execute(
                query_select(with_design=True).where(OracleQuery.id.in_(ids))
                .order_by(OracleQuery.id)
            ).all()
            return to_records(rows)

    def release_lease(self, key: str, *, owner: str) -> bool:
        """Give a lease back early; False if ``owner`` does not hold it."""
        with self.session() as session:
            done = cast("sa.CursorResult[Any]", session.execute(
                sa.update(QUERY_TABLE)
                .where(OracleQuery.idempotency_key == key, OracleQuery.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, updated_at=db_now())
            ))
            return bool(done.rowcount)

    def get_query(self, key: str, *, with_design: bool = True) -> QueryRecord:
        """One query by idempotency key; :class:`NotFound` if absent."""
        with self.session() as session:
            row = session.execute(
                query_select(with_design=with_design).where(OracleQuery.idempotency_key == key)
            ).first()
            if row is None:
                raise NotFound(f"query {key!r} does not exist (keys look like CAMPAIGN:ROUND:CANDIDATE)")
            return to_record(row)

    def list_queries(
        self,
        campaign: str,
        *,
        statuses: Sequence[str] | None = None,
        round_index: int | None = None,
        with_design: bool = False,
    ) -> list[QueryRecord]:
        """A campaign's queries, oldest first, optionally filtered by status and round."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            stmt = query_select(with_design=with_design).where(OracleQuery.campaign_id == cid)
            if statuses is not None:
                stmt = stmt.where(OracleQuery.status.in_(list(statuses)))
            if round_index is not None:
                stmt = stmt.where(Round.round_index == round_index)
            return to_records(session.execute(stmt.order_by(OracleQuery.id)).all())

    def query_points(self, campaign: str) -> list[QueryPoint]:
        """A campaign's queries as plots need them (status, values, error, the surrogate's
        prediction at selection), oldest first: one narrow SELECT, no design decoded."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            stmt = (sa.select(_QUERY.id, _QUERY.idempotency_key, Round.round_index, _QUERY.status,
                              _QUERY.result_values, _QUERY.error, Candidate.surrogate_mean,
                              Candidate.surrogate_std)
                    .join(Candidate, _QUERY.candidate_id == Candidate.id)
                    .join(Round, Candidate.round_id == Round.id)
                    .where(_QUERY.campaign_id == cid).order_by(_QUERY.id))
            return [QueryPoint(*row) for row in session.execute(stmt).all()]

    def get_queries(self, keys: Sequence[str], *, with_design: bool = False) -> list[QueryRecord]:
        """The queries with these keys, in the order given (one statement; unknown keys are
        left out)."""
        if not keys:
            return []
        with self.session() as session:
            rows = session.execute(query_select(with_design=with_design)
                                   .where(OracleQuery.idempotency_key.in_(list(keys)))).all()
        by_key = {q.key: q for q in to_records(rows)}
        return [by_key[k] for k in keys if k in by_key]

    def rounds_in_flight(self, campaign: str) -> set[int]:
        """Indices of the campaign's rounds that still have a query pending, dispatched or
        running (one GROUP BY: the cost does not grow with the queue)."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            rows = session.execute(
                sa.select(Round.round_index)
                .join(Candidate, Candidate.round_id == Round.id)
                .join(OracleQuery, OracleQuery.candidate_id == Candidate.id)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status.in_(IN_FLIGHT))
                .group_by(Round.round_index)
            ).scalars().all()
            return {int(i) for i in rows}

    def query_counts(self, campaign: str) -> dict[str, int]:
        """Number of queries per status (every status present, zeros included)."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            rows = session.execute(
                sa.select(OracleQuery.status, sa.func.count())
                .where(OracleQuery.campaign_id == cid).group_by(OracleQuery.status)
            ).all()
            counts = dict.fromkeys(QUERY_STATUSES, 0)
            counts.update({s: int(n) for s, n in rows})
            return counts

    def in_flight_count(self, campaign: str) -> int:
        """Number of the campaign's queries still waiting on the oracle (pending, dispatched,
        running): what must reach zero before the campaign can be deleted safely."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            return int(session.scalar(
                sa.select(sa.func.count()).select_from(OracleQuery)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status.in_(IN_FLIGHT))
            ) or 0)

    def failure_reasons(self, campaign: str) -> list[tuple[str, str]]:
        """``(key, error)`` of every failed query of the campaign, oldest first (no designs read;
        served by the ``(campaign_id, status)`` index)."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            rows = session.execute(
                sa.select(OracleQuery.idempotency_key, OracleQuery.error)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status == "failed")
                .order_by(OracleQuery.id)
            ).all()
            return [(key, error or "") for key, error in rows]

    def _query_row(self, session: Session, key: str) -> OracleQuery:
        row = session.scalar(sa.select(OracleQuery).where(OracleQuery.idempotency_key == key)
                             .execution_options(populate_existing=True))
        if row is None:
            raise NotFound(f"query {key!r} does not exist (keys look like CAMPAIGN:ROUND:CANDIDATE)")
        return row


def lifecycle_changes(
    key: str, expected: str, new: str
) -> tuple[dict[str, Any], list[sa.ColumnElement[bool]]]:
    """The column changes and WHERE conditions of the lifecycle edge ``expected → new``.

    Shared by every writer of query states (:meth:`QueriesMixin.transition_query`, the pull API),
    so there is one state machine: the edge is checked (InvalidTransition), ``pending →
    dispatched`` counts an attempt and stamps ``dispatched_at``, ``dispatched → pending`` needs no
    job id stored, terminal states stamp ``finished_at`` and drop the lease.
    """
    check_transition(key, expected, new)
    changes: dict[str, Any] = {"status": new, "updated_at": db_now()}
    where: list[sa.ColumnElement[bool]] = [OracleQuery.status == expected]
    if expected == "pending" and new == "dispatched":
        changes["attempts"] = OracleQuery.attempts + 1
        changes["dispatched_at"] = db_now()
    if expected == "dispatched" and new == "pending":
        where.append(OracleQuery.external_job_id.is_(None))  # never re-queue a known job
    if new in TERMINAL:
        changes.update(finished_at=db_now(), lease_owner=None, lease_expires_at=None)
    return changes, where


def _check_job_id(key: str, job_id: Any) -> str:
    if not isinstance(job_id, str) or not job_id or len(job_id) > 512:
        raise InvalidValue(f"query {key!r}: job_id must be a non-empty string of at most 512 "
                           f"characters, got {job_id!r}")
    return job_id


def _job_conflict(key: str, stored: str | None, given: str) -> str:
    return (f"query {key!r} already has job id {stored!r}; refusing to replace it with {given!r} "
            f"(re-poll the stored job instead of submitting again)")
