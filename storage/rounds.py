"""Rounds: a round, ALL its candidates and its outbox queries written in one transaction.

`key = "{campaign}:{round}:{candidate}"` — deterministic idempotency keys, so a resumed loop that
re-records the same round gets the same keys (and an identical re-write is a no-op).
"""
from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, defer

from storage.arrays import decode_array, encode_array
from storage.clock import db_now
from storage.config_versions import latest_version
from storage.errors import IntegrityViolation, InvalidValue, NotFound, RoundConflict
from storage.models import ROUND_STATUSES, CampaignConfig, Candidate, Event, OracleQuery, Round
from storage.records import CandidateRecord, NewCandidate, RoundRecord
from storage.session import StorageBase, check_finite, check_json


def query_key(campaign: str, round_index: int, candidate_index: int) -> str:
    """The idempotency key of the query for one candidate (unique across the database)."""
    return f"{campaign}:{round_index}:{candidate_index}"


def _optional_float(value: Any, field: str) -> float | None:
    return None if value is None else check_finite(value, field=field)


def _optional_reason(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise InvalidValue(f"{field}: expected a short reason (1-64 characters) or None, got {value!r:.80}")
    return value


def _optional_int(value: Any, field: str) -> int | None:
    # numpy / torch integers become Python ints: sqlite3 would bind a numpy int64 through the
    # buffer protocol and store its raw bytes as a BLOB (read back as b'\x01\x00...').
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidValue(f"{field}: expected an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidValue(f"{field}: expected an integer, got {type(value).__name__} "
                           f"{value!r:.40}") from None


def _candidate_rows(candidates: Sequence[NewCandidate], selected: set[int]) -> list[dict[str, Any]]:
    rows = []
    for i, c in enumerate(candidates):
        if not isinstance(c, NewCandidate):
            raise InvalidValue(f"candidates[{i}]: expected NewCandidate, got {type(c).__name__}")
        design, dtype, shape, digest = encode_array(c.design, field=f"candidates[{i}].design")
        features = None
        if c.features is not None:
            features = encode_array(c.features, field=f"candidates[{i}].features")[0]
        rows.append({
            "candidate_index": i, "design": design, "design_dtype": dtype, "design_shape": shape,
            "design_hash": digest, "features": features,
            "log_weight": None if c.log_weight is None else float(c.log_weight),
            "group_index": _optional_int(c.group, f"candidates[{i}].group"),
            "particle_index": _optional_int(c.particle, f"candidates[{i}].particle"),
            "surrogate_mean": _optional_float(c.surrogate_mean, f"candidates[{i}].surrogate_mean"),
            "surrogate_std": _optional_float(c.surrogate_std, f"candidates[{i}].surrogate_std"),
            "acquisition": _optional_float(c.acquisition, f"candidates[{i}].acquisition"),
            "excluded_reason": _optional_reason(c.excluded_reason, f"candidates[{i}].excluded_reason"),
            "selected": i in selected,
        })
    return rows


def _content_hash(head: dict[str, Any], rows: list[dict[str, Any]], blob: bytes | None) -> str:
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    digest.update(hashlib.sha256(blob or b"").digest())
    for r in rows:
        fields = {k: v for k, v in r.items() if k not in ("design", "features")}
        fields["features"] = hashlib.sha256(r["features"] or b"").hexdigest()
        digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _round_records(session: Session, campaign: str, rows: Sequence[Round], blob: bool,
                   scope: sa.ColumnElement[bool] | None = None) -> list[RoundRecord]:
    """Records of ``rows`` in a fixed number of statements whatever their number (no query per
    round: the driver lists a long campaign's rounds on every pass). ``scope`` selects the
    candidates of ``rows`` (default: their ids, for a few rows)."""
    ids = [r.id for r in rows]
    if not ids:
        return []
    if scope is None:
        scope = Candidate.round_id.in_(ids)
    counts = dict(session.execute(
        sa.select(Candidate.round_id, sa.func.count()).where(scope)
        .group_by(Candidate.round_id)
    ).all())
    picked: dict[int, list[tuple[int, str]]] = {}
    for round_id, index, key in session.execute(
        sa.select(Candidate.round_id, Candidate.candidate_index, OracleQuery.idempotency_key)
        .join(OracleQuery, OracleQuery.candidate_id == Candidate.id)
        .where(scope)
        .order_by(Candidate.round_id, Candidate.candidate_index)
    ).all():
        picked.setdefault(round_id, []).append((index, key))
    return [
        RoundRecord(
            campaign=campaign, index=row.round_index, status=row.status, alpha=row.alpha,
            oracle_name=row.oracle_name, num_candidates=int(counts.get(row.id, 0)),
            selected=tuple(i for i, _ in picked.get(row.id, ())),
            query_keys=tuple(k for _, k in picked.get(row.id, ())),
            surrogate_state=row.surrogate_state, timings=row.timings, summary=row.summary,
            content_hash=row.content_hash, created_at=row.created_at, updated_at=row.updated_at,
            surrogate_blob=row.surrogate_blob if blob else None,
            config_version=row.config_version, unique_ancestors=row.unique_ancestors,
        )
        for row in rows
    ]


def _round_record(session: Session, campaign: str, row: Round, blob: bool) -> RoundRecord:
    return _round_records(session, campaign, [row], blob)[0]


class RoundsMixin(StorageBase):
    """Round and candidate rows."""

    def record_round(
        self,
        campaign: str,
        index: int,
        *,
        alpha: float,
        candidates: Sequence[NewCandidate],
        selected: Sequence[int] = (),
        oracle_name: str | None = None,
        surrogate_state: dict[str, Any] | None = None,
        surrogate_blob: bytes | None = None,
        timings: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        config_version: int | None = None,
        unique_ancestors: int | None = None,
    ) -> RoundRecord:
        """Write a round, every candidate and one pending query per selected candidate, atomically.

        1. validate and encode everything before the transaction opens;
        2. in one transaction: insert the round, bulk-insert the candidates (one multi-row
           statement per batch, not one per row), bulk-insert the queries (the outbox);
        3. an existing round with the same index: identical content → returned as is (no-op);
           different content → :class:`RoundConflict`.

        Args:
            surrogate_state: JSON metadata of the surrogate; ``surrogate_blob``: its tensors as
                safetensors bytes (never pickle).
            config_version: the campaign config version the round was generated with (it must
                exist); None stores the campaign's current version, read in the same
                transaction. Not part of the content hash: an identical re-write returns the
                stored round with the version it was first written with.
            unique_ancestors: how many distinct founders the round's final particles descend
                from (summed over chunks; >= 0, or None when not tracked). Not hashed either.

        >>> rec = storage.record_round("c1", 0, alpha=0.1, candidates=[NewCandidate(x) for x in X],
        ...                            selected=[3, 7], oracle_name="lab")
        >>> rec.query_keys
        ('c1:0:3', 'c1:0:7')
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidValue(f"round index: expected an integer >= 0, got {index!r}")
        alpha = check_finite(alpha, field="alpha")
        if alpha <= 0:
            raise InvalidValue(f"alpha: must be > 0 (the tilt temperature), got {alpha!r}")
        if not candidates:
            raise InvalidValue(f"round {index} of campaign {campaign!r}: candidates is empty")
        chosen = [int(i) for i in selected]
        if len(set(chosen)) != len(chosen) or any(not 0 <= i < len(candidates) for i in chosen):
            raise InvalidValue(
                f"selected: indices must be unique and in [0, {len(candidates)}), got {chosen}"
            )
        if chosen and not oracle_name:
            raise InvalidValue("oracle_name: required when candidates are selected for the oracle")
        for name, value in (("surrogate_state", surrogate_state), ("timings", timings),
                            ("summary", summary)):
            check_json(value, field=name)
        if surrogate_blob is not None and not isinstance(surrogate_blob, (bytes, bytearray)):
            raise InvalidValue(f"surrogate_blob: expected bytes, got {type(surrogate_blob).__name__}")
        config_version = _optional_int(config_version, "config_version")
        unique_ancestors = _optional_int(unique_ancestors, "unique_ancestors")
        if unique_ancestors is not None and unique_ancestors < 0:
            raise InvalidValue(f"unique_ancestors: expected an integer >= 0, got {unique_ancestors}")
        rows = _candidate_rows(candidates, set(chosen))
        head = {"alpha": alpha, "oracle_name": oracle_name, "selected": sorted(chosen),
                "surrogate_state": surrogate_state}
        digest = _content_hash(head, rows, surrogate_blob)
        try:
            return self._write_round(campaign, index, alpha, rows, sorted(chosen), oracle_name,
                                     surrogate_state, surrogate_blob, timings, summary, digest,
                                     config_version, unique_ancestors)
        except IntegrityViolation:
            # A concurrent writer recorded the same index first: same content is fine.
            existing = self.load_round(campaign, index)
            if existing.content_hash == digest:
                return existing
            raise RoundConflict(self._conflict_message(campaign, index)) from None

    def _conflict_message(self, campaign: str, index: int) -> str:
        return (
            f"round {index} of campaign {campaign!r} is already recorded with different "
            f"content; record the next index, or discard_round({campaign!r}, {index}) first "
            f"(only possible while none of its queries was dispatched)"
        )

    def _write_round(  # type: ignore[no-untyped-def]
        self, campaign, index, alpha, rows, chosen, oracle_name, surrogate_state, surrogate_blob,
        timings, summary, digest, config_version, unique_ancestors,
    ) -> RoundRecord:
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            existing = session.scalar(
                sa.select(Round).where(Round.campaign_id == cid, Round.round_index == index)
            )
            if existing is not None:
                if existing.content_hash != digest:
                    raise RoundConflict(self._conflict_message(campaign, index))
                return _round_record(session, campaign, existing, blob=False)
            config_version = self._round_config_version(session, campaign, cid, config_version)
            round_id = session.scalar(
                sa.insert(Round).values(
                    campaign_id=cid, round_index=index, status="open", alpha=alpha,
                    oracle_name=oracle_name, surrogate_state=surrogate_state,
                    surrogate_blob=None if surrogate_blob is None else bytes(surrogate_blob),
                    timings=timings, summary=summary, content_hash=digest,
                    config_version=config_version, unique_ancestors=unique_ancestors,
                ).returning(Round.id)
            )
            # Bulk: one executemany for the candidates (batched multi-row VALUES on Postgres),
            # one INSERT ... SELECT for the outbox queries; no per-row round trips.
            conn = session.connection()
            conn.execute(sa.insert(cast(sa.Table, Candidate.__table__)),
                         [{**r, "round_id": round_id} for r in rows])
            if chosen:
                prefix = f"{campaign}:{index}:"
                source = sa.select(
                    sa.literal(cid), Candidate.id, sa.literal(oracle_name),
                    sa.literal(prefix) + sa.cast(Candidate.candidate_index, sa.String),
                    sa.literal("pending"), sa.literal(0),
                ).where(Candidate.round_id == round_id, Candidate.selected.is_(True))
                source = source.order_by(Candidate.candidate_index)
                conn.execute(sa.insert(cast(sa.Table, OracleQuery.__table__)).from_select(
                    ["campaign_id", "candidate_id", "oracle_name", "idempotency_key", "status",
                     "attempts"], source))
            self._log(session, cid, "round.recorded", {
                "round": index, "candidates": len(rows), "selected": chosen, "alpha": alpha,
                "config_version": config_version})
            row = session.get_one(Round, round_id)
            return _round_record(session, campaign, row, blob=False)

    def _round_config_version(self, session: Session, campaign: str, cid: int,
                              given: int | None) -> int | None:
        latest = latest_version(session, cid)
        if given is None:
            return latest
        exists = session.scalar(sa.select(CampaignConfig.id).where(
            CampaignConfig.campaign_id == cid, CampaignConfig.version == given))
        if exists is None:
            known = f"1..{latest}" if latest else "none"
            raise NotFound(
                f"config_version: campaign {campaign!r} has no config version {given} (versions "
                f"{known}); pass an existing version, or None for the current one"
            )
        return given

    def load_round(self, campaign: str, index: int) -> RoundRecord:
        """One round with its surrogate blob (what a resume needs to rebuild the surrogate)."""
        with self.session() as session:
            row = self._round_row(session, campaign, index)
            return _round_record(session, campaign, row, blob=True)

    def round_states(self, campaign: str, *, status: str | None = None,
                     indices: Sequence[int] | None = None) -> list[tuple[int, str]]:
        """``(index, status)`` of every round (or of those in ``status``, e.g. the ``"open"``
        ones the driver closes: a handful however long the campaign; or of the rounds
        ``indices``) in index order: one narrow SELECT (:meth:`list_rounds` reads every query
        key)."""
        if status is not None and status not in ROUND_STATUSES:
            raise InvalidValue(f"round status {status!r} is not one of {', '.join(ROUND_STATUSES)}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            which = [Round.campaign_id == cid]
            if status is not None:
                which.append(Round.status == status)
            if indices is not None:
                which.append(Round.round_index.in_(sorted({int(i) for i in indices})))
            rows = session.execute(sa.select(Round.round_index, Round.status)
                                   .where(*which).order_by(Round.round_index)).all()
            return [(int(i), str(st)) for i, st in rows]

    def round_tally(self, campaign: str) -> tuple[int, int]:
        """``(number of rounds, highest round index)`` (``(0, -1)`` with none): one aggregate,
        the same size however long the campaign (what a per-round read needs to see whether
        rounds were added or discarded since it last looked)."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            count, top = session.execute(
                sa.select(sa.func.count(), sa.func.max(Round.round_index))
                .where(Round.campaign_id == cid)).one()
            return int(count), -1 if top is None else int(top)

    def round_tally_with_discards(self, campaign: str) -> tuple[int, int, int]:
        """:meth:`round_tally` plus the number of rounds ever discarded (``round.discarded``
        events, which are never removed): a discarded top round replaced by a new one leaves
        the count and the highest index as they were, but not this third number."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            discards = (sa.select(sa.func.count()).select_from(Event)
                        .where(Event.campaign_id == cid, Event.kind == "round.discarded")
                        .scalar_subquery())
            count, top, gone = session.execute(
                sa.select(sa.func.count(), sa.func.max(Round.round_index), discards)
                .where(Round.campaign_id == cid)).one()
            return int(count), -1 if top is None else int(top), int(gone or 0)

    def list_rounds(self, campaign: str, *, after_index: int | None = None) -> list[RoundRecord]:
        """Every round of a campaign in index order (without surrogate blobs); with
        ``after_index``, only the rounds with a higher index (what changed since a reader's
        last look: its size does not grow with the campaign)."""
        if after_index is not None and (isinstance(after_index, bool)
                                        or not isinstance(after_index, int)):
            raise InvalidValue(f"after_index: expected an integer or None, got {after_index!r}")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            which = [Round.campaign_id == cid]
            if after_index is not None:
                which.append(Round.round_index > after_index)
            # The surrogate blob is not needed here: leave it unloaded (it can be megabytes).
            rows = session.scalars(
                sa.select(Round).where(*which).order_by(Round.round_index)
                .options(defer(Round.surrogate_blob))
            ).all()
            of_rounds = Candidate.round_id.in_(sa.select(Round.id).where(*which))
            return _round_records(session, campaign, rows, blob=False, scope=of_rounds)

    def update_round(
        self,
        campaign: str,
        index: int,
        *,
        status: str | None = None,
        timings: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> RoundRecord:
        """Set a round's status (``open | complete | failed``), timings or summary statistics."""
        if status is not None and status not in ROUND_STATUSES:
            raise InvalidValue(f"round status {status!r} is not one of {', '.join(ROUND_STATUSES)}")
        check_json(timings, field="timings")
        check_json(summary, field="summary")
        changes = {k: v for k, v in (("status", status), ("timings", timings),
                                     ("summary", summary)) if v is not None}
        with self.session() as session:
            row = self._round_row(session, campaign, index)
            if changes:
                session.execute(sa.update(Round).where(Round.id == row.id)
                                .values(**changes, updated_at=db_now()))
                self._log(session, row.campaign_id, "round.updated", {"round": index, **changes})
                session.refresh(row)
            return _round_record(session, campaign, row, blob=False)

    def discard_round(self, campaign: str, index: int, *, reason: str) -> int:
        """Delete an abandoned round with its candidates and queries; returns candidates removed.

        Refused (:class:`RoundConflict`) once any of its queries has left ``pending``: that query
        may be at the oracle, and its result must not be lost. The query rows are locked first,
        so a concurrent dispatch either happens before (and the discard is refused) or finds the
        query gone.
        """
        with self.session() as session:
            row = self._round_row(session, campaign, index)
            states = session.execute(
                sa.select(OracleQuery.idempotency_key, OracleQuery.status)
                .join(Candidate, OracleQuery.candidate_id == Candidate.id)
                .where(Candidate.round_id == row.id).with_for_update(of=OracleQuery)
            ).all()
            gone = [f"{k} ({s})" for k, s in states if s != "pending"]
            if gone:
                raise RoundConflict(
                    f"round {index} of campaign {campaign!r} cannot be discarded: queries "
                    f"{', '.join(gone[:5])} already left 'pending' and may be at the oracle; "
                    f"cancel or complete them instead"
                )
            count = session.scalar(sa.select(sa.func.count()).where(Candidate.round_id == row.id))
            session.execute(sa.delete(Round).where(Round.id == row.id))
            self._log(session, row.campaign_id, "round.discarded",
                      {"round": index, "candidates": count, "reason": reason})
            return int(count or 0)

    def list_candidates(self, campaign: str, index: int) -> list[CandidateRecord]:
        """Every candidate of a round (screened-out ones too), decoded, in index order."""
        with self.session() as session:
            row = self._round_row(session, campaign, index)
            result = session.execute(
                sa.select(Candidate, OracleQuery.idempotency_key)
                .outerjoin(OracleQuery, OracleQuery.candidate_id == Candidate.id)
                .where(Candidate.round_id == row.id).order_by(Candidate.candidate_index)
            ).all()
            return [
                CandidateRecord(
                    round_index=index, index=c.candidate_index,
                    design=decode_array(c.design, c.design_dtype, c.design_shape),
                    design_hash=c.design_hash,
                    features=None if c.features is None else decode_array(c.features),
                    log_weight=c.log_weight, group=c.group_index, particle=c.particle_index,
                    surrogate_mean=c.surrogate_mean, surrogate_std=c.surrogate_std,
                    acquisition=c.acquisition, selected=c.selected, query_key=key,
                    excluded_reason=c.excluded_reason,
                )
                for c, key in result
            ]

    def _round_row(self, session: Session, campaign: str, index: int) -> Round:
        cid = self._campaign_id(session, campaign)
        row = session.scalar(
            sa.select(Round).where(Round.campaign_id == cid, Round.round_index == index)
        )
        if row is None:
            raise NotFound(f"round {index} of campaign {campaign!r} does not exist")
        return row
