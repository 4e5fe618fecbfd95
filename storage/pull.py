"""The pull API's storage: lab clients claim a campaign's queued queries and report results.

A second dispatch path over the same outbox and the same lifecycle (:func:`lifecycle_changes`):

- **claim**: the campaign's ``pending`` queries with no live lease (a driver's
  :meth:`claim_queries` lease is respected), and queries dispatched by an earlier pull claim
  whose lease expired, move to ``dispatched`` (an attempt counted) with ``lease_owner`` = the
  client and ``lease_expires_at`` = database now + ``lease_s``. An expired one goes
  ``dispatched → pending → dispatched`` (both transitions logged). One ``pull_claim`` row per
  (campaign, client, request id) keeps the keys returned, so a retried request gets the same
  queries back (and their leases renewed) instead of new ones. A claim that finds nothing
  stores nothing: a retry of it may find work that arrived since.
- **report**: `UPDATE … WHERE key = :k AND status = 'dispatched' AND pull_claim_id IN (claims
  of :client)`: accepted while the query's latest claim is this client's, even after its lease
  expired, as long as nobody else claimed it since. An identical second report is a no-op
  (False); anything else is refused with :class:`WorkNotHeld` naming why.

Which campaigns use the pull path is the service's decision (their oracle's kind): storage does
not read configs. Queries dispatched by a driver (no pull claim) are never handed to a client.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.clock import db_now, db_now_plus
from storage.errors import InvalidValue, NotFound, WorkNotHeld
from storage.leases import check_owner, check_seconds, insert_ignoring_conflicts
from storage.lifecycle import check_objectives
from storage.models import QUERY_TABLE, OracleQuery, PullClaim
from storage.queries import lifecycle_changes, query_select, to_records
from storage.records import QueryRecord
from storage.session import StorageBase

#: The most queries one claim may return.
MAX_CLAIM_ITEMS = 1000
#: The longest pull lease: 30 days (a lab may take days per query).
MAX_LEASE_S = 30 * 86_400


class PullMixin(StorageBase):
    """Claims and reports of the pull API."""

    def claim_work(self, campaign: str, client_id: str, request_id: str, max_items: int,
                   lease_s: float) -> list[QueryRecord]:
        """Lease up to ``max_items`` of ``campaign``'s queued queries to lab client ``client_id``.

        Idempotent per ``(client_id, request_id)``: a retry returns the same queries, in the
        same order, in their current state (leases still held by the client are renewed).

        Postgres: the rows are chosen ``FOR UPDATE SKIP LOCKED``, so concurrent claims take
        disjoint sets; SQLite serialises writers (``BEGIN IMMEDIATE``).

        Returns:
            The claimed queries with their designs, oldest first ([] when nothing is queued).

        Raises:
            NotFound: no such campaign. InvalidValue: a bad id, ``max_items`` or ``lease_s``.
        """
        check_owner(client_id, field="client_id")
        check_owner(request_id, field="request_id")
        lease = check_seconds(lease_s, field="lease_s", maximum=MAX_LEASE_S)
        if (isinstance(max_items, bool) or not isinstance(max_items, int)
                or not 1 <= max_items <= MAX_CLAIM_ITEMS):
            raise InvalidValue(f"max_items: expected an integer from 1 to {MAX_CLAIM_ITEMS}, "
                               f"got {max_items!r}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            same = (PullClaim.campaign_id == cid, PullClaim.client_id == client_id,
                    PullClaim.request_id == request_id)
            earlier = session.execute(sa.select(PullClaim.id, PullClaim.query_keys)
                                      .where(*same)).first()
            if earlier is not None:
                return self._replay(session, earlier.id, earlier.query_keys, client_id, lease)
            # two ordered scans of the (campaign_id, status, id) index, each stopping at LIMIT:
            # one OR-ed query made Postgres sort the whole queue on every claim
            expired_leases = session.execute(
                sa.select(OracleQuery.id, OracleQuery.idempotency_key, OracleQuery.status)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status == "dispatched",
                       OracleQuery.pull_claim_id.is_not(None),
                       OracleQuery.external_job_id.is_(None),
                       OracleQuery.lease_expires_at < db_now())
                .order_by(OracleQuery.id).limit(max_items)
                .with_for_update(skip_locked=True)
            ).all()
            fresh = session.execute(
                sa.select(OracleQuery.id, OracleQuery.idempotency_key, OracleQuery.status)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status == "pending",
                       sa.or_(OracleQuery.lease_expires_at.is_(None),
                              OracleQuery.lease_expires_at < db_now()))
                .order_by(OracleQuery.id).limit(max_items - len(expired_leases))
                .with_for_update(skip_locked=True)
            ).all() if len(expired_leases) < max_items else []
            queued = sorted([*expired_leases, *fresh], key=lambda q: q.id)
            if not queued:
                return []
            keys = [q.idempotency_key for q in queued]
            claim_id = session.scalar(
                insert_ignoring_conflicts(session, PullClaim)
                .values(campaign_id=cid, client_id=client_id, request_id=request_id,
                        query_keys=keys, created_at=db_now())
                .returning(PullClaim.id)
            )
            if claim_id is None:  # the same request, concurrently, committed first: replay it
                earlier = session.execute(sa.select(PullClaim.id, PullClaim.query_keys)
                                          .where(*same)).one()
                return self._replay(session, earlier.id, earlier.query_keys, client_id, lease)
            expired = [q for q in queued if q.status == "dispatched"]
            if expired:
                self._move(session, cid, [q.id for q in expired], "dispatched", "pending",
                           {"reason": "pull lease expired"})
            self._move(session, cid, [q.id for q in queued], "pending", "dispatched",
                       {"client": client_id, "request_id": request_id},
                       lease_owner=client_id, lease_expires_at=db_now_plus(lease),
                       pull_claim_id=claim_id)
            return self._records(session, keys)

    def report_work(self, key: str, client_id: str, values: Mapping[str, float] | None = None,
                    error: str | None = None, noise: Mapping[str, float] | None = None) -> bool:
        """Store lab client ``client_id``'s result for query ``key``: ``values`` (succeeded) or
        ``error`` (failed, with the reason).

        Returns:
            True when stored; False when this client already reported this very result.

        Raises:
            WorkNotHeld: the query's latest claim is another client's, it was never claimed
                through the pull API, or it already has a different result.
            InvalidValue: both or neither of values / error, or a non-finite value.
            NotFound: no query has this key.
        """
        check_owner(client_id, field="client_id")
        if (values is None) == (error is None):
            raise InvalidValue(f"query {key!r}: report either values (succeeded) or error "
                               f"(failed), not both and not neither")
        vals = check_objectives(values, key=key, field="values")
        noise_vals = check_objectives(noise, key=key, field="noise")
        if error is not None and not (isinstance(error, str) and error.strip()):
            raise InvalidValue(f"query {key!r}: a failed report needs its error text (the reason)")
        new = "succeeded" if vals is not None else "failed"
        changes, where = lifecycle_changes(key, "dispatched", new)
        changes.update(result_values=vals, noise=noise_vals, error=error)
        mine = sa.select(PullClaim.id).where(PullClaim.client_id == client_id)
        with self.session() as session:
            won = session.execute(
                sa.update(QUERY_TABLE)
                .where(OracleQuery.idempotency_key == key, *where,
                       OracleQuery.pull_claim_id.in_(mine.scalar_subquery()))
                .values(**changes).returning(OracleQuery.campaign_id)
            ).first()
            if won is not None:
                payload: dict[str, Any] = {"key": key, "from": "dispatched", "to": new,
                                           "client": client_id}
                if error is not None:
                    payload["error"] = error[:500]
                self._log(session, won.campaign_id, "query.transition", payload)
                return True
            row = session.scalar(sa.select(OracleQuery).where(OracleQuery.idempotency_key == key))
            if row is None:
                raise NotFound(f"query {key!r} does not exist (keys look like "
                               f"CAMPAIGN:ROUND:CANDIDATE)")
            holder = None if row.pull_claim_id is None else session.scalar(
                sa.select(PullClaim.client_id).where(PullClaim.id == row.pull_claim_id))
            if holder is None:
                raise WorkNotHeld(f"query {key!r} was not claimed through the pull API (status "
                                  f"{row.status}); claim work first")
            if holder != client_id:
                raise WorkNotHeld(f"query {key!r} is held by another client since your lease "
                                  f"expired; your result was not stored")
            if (row.status == new and row.result_values == vals and row.noise == noise_vals
                    and row.error == error):
                return False
            raise WorkNotHeld(f"query {key!r} is already {row.status} with another result; a "
                              f"result is stored once, yours was not stored")

    def work_of(self, campaign: str, client_id: str, *, statuses: tuple[str, ...] | None = None,
                with_design: bool = False) -> list[QueryRecord]:
        """The campaign's queries whose latest pull claim is ``client_id``'s (held now, or
        reported by it), oldest first, optionally only those in ``statuses``."""
        check_owner(client_id, field="client_id")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            mine = sa.select(PullClaim.id).where(PullClaim.campaign_id == cid,
                                                 PullClaim.client_id == client_id)
            stmt = query_select(with_design=with_design).where(
                OracleQuery.campaign_id == cid,
                OracleQuery.pull_claim_id.in_(mine.scalar_subquery()))
            if statuses is not None:
                stmt = stmt.where(OracleQuery.status.in_(list(statuses)))
            return to_records(session.execute(stmt.order_by(OracleQuery.id)).all())

    def _replay(self, session: Session, claim_id: int, keys: list[str], client_id: str,
                lease: float) -> list[QueryRecord]:
        session.execute(
            sa.update(QUERY_TABLE)
            .where(OracleQuery.pull_claim_id == claim_id, OracleQuery.status == "dispatched",
                   OracleQuery.lease_owner == client_id)
            .values(lease_expires_at=db_now_plus(lease), updated_at=db_now())
        )
        return self._records(session, keys)

    def _records(self, session: Session, keys: list[str]) -> list[QueryRecord]:
        rows = session.execute(query_select(with_design=True)
                               .where(OracleQuery.idempotency_key.in_(keys))).all()
        by_key = {q.key: q for q in to_records(rows)}
        return [by_key[k] for k in keys if k in by_key]

    def _move(self, session: Session, cid: int, ids: list[int], expected: str, new: str,
              note: dict[str, Any], **extra: Any) -> None:
        """Move queries ``ids`` along one lifecycle edge (all of them: they are locked)."""
        changes, where = lifecycle_changes(f"{len(ids)} queries", expected, new)
        moved = session.execute(
            sa.update(QUERY_TABLE).where(OracleQuery.id.in_(ids), *where)
            .values(**changes, **extra).returning(OracleQuery.idempotency_key)
        ).scalars().all()
        for key in sorted(moved):
            self._log(session, cid, "query.transition", {"key": key, "from": expected, "to": new,
                                                         **note})
