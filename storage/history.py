"""The resumable history of a campaign, loaded in one query (no N+1)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from storage.errors import InvalidValue
from storage.models import Candidate, OracleQuery
from storage.queries import collector_paused, query_select, to_records
from storage.records import IN_FLIGHT, History, QueryRecord
from storage.session import StorageBase


class HistoryMixin(StorageBase):
    """Campaign history."""

    def load_history(self, campaign: str, *, with_design: bool = True) -> History:
        """Every query of ``campaign`` with its design, split by outcome.

        ``with_design=False`` leaves the design bytes in the database (``design`` is None and
        :meth:`History.X` unavailable): what a status line or a best-so-far needs (about 1.5x
        faster at 10,000 queries of 32 floats, more with larger designs; bench/storage_bench.py).

        1. one SELECT joining ``oracle_query`` to ``candidate`` (design bytes), ``round`` and
           ``campaign``, filtered on the ``(campaign_id, status)`` index (plus the name lookup);
        2. designs decoded from npy (no pickle);
        3. split into completed (``succeeded``: design, values, noise), in-flight (``pending``,
           ``dispatched``, ``running``: key and job id, to re-poll) and failed (``failed``,
           ``cancelled``: with the error text).

        >>> h = storage.load_history("c1")
        >>> X, Y = h.X(), h.Y(["yield"])
        """
        with self.session() as session, collector_paused():
            cid = self._campaign_id(session, campaign)
            # Core execution (no ORM result layer): plain rows for 10,000s of queries.
            rows = session.connection().execute(
                query_select(with_design=with_design).where(OracleQuery.campaign_id == cid)
                .order_by(OracleQuery.id)
            ).all()
            return split_history(campaign, to_records(rows))

    def history_changes(self, campaign: str, *, after_id: int,
                        ids: Sequence[int] = ()) -> list[tuple[int, QueryRecord]]:
        """``(id, record)`` of the campaign's queries with id > ``after_id`` (with designs) and of
        those among ``ids`` (without designs: a design never changes), in id order: ONE SELECT
        whose size is what changed, not the campaign's length. A query of ``ids`` missing from
        the answer was deleted (a discarded round).

        What an incremental history needs (``optimizer.campaign.history_cache``): a finished
        query never changes again (terminal states have no way out), so re-reading the new
        rows and those that were in flight when last read keeps a copy equal to
        :meth:`load_history`.
        """
        if isinstance(after_id, bool) or not isinstance(after_id, int):
            raise InvalidValue(f"after_id: expected an integer, got {after_id!r}")
        known = sorted({int(i) for i in ids})
        fresh = OracleQuery.id > after_id
        design = [sa.case((fresh, col), else_=sa.null()).label(col.name)
                  for col in (Candidate.design, Candidate.design_dtype)]
        design.append(sa.case((fresh, sa.cast(Candidate.design_shape, sa.Text)),
                              else_=sa.null()).label("design_shape"))
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            stmt = (query_select(with_design=False).add_columns(*design, OracleQuery.id)
                    .where(OracleQuery.campaign_id == cid,
                           sa.or_(fresh, OracleQuery.id.in_(known)) if known else fresh)
                    .order_by(OracleQuery.id))
            rows = session.connection().execute(stmt).all()
        return [(int(r[-1]), rec) for r, rec in
                zip(rows, to_records([r[:-1] for r in rows]), strict=True)]

    def hot_query_plans(self, campaign: str) -> dict[str, str]:
        """EXPLAIN of the hot queries (history, claim scan, transition) — to check index use."""
        explain = "EXPLAIN" if self.dialect == "postgresql" else "EXPLAIN QUERY PLAN"
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            statements = {
                "load_history": query_select(with_design=True)
                .where(OracleQuery.campaign_id == cid).order_by(OracleQuery.id),
                "claim_scan": sa.select(OracleQuery.id)
                .where(OracleQuery.campaign_id == cid, OracleQuery.status == "pending")
                .order_by(OracleQuery.id).limit(10),
                "transition": sa.select(OracleQuery.id)
                .where(OracleQuery.idempotency_key == f"{campaign}:0:0",
                       OracleQuery.status == "pending"),
            }
            plans = {}
            for name, stmt in statements.items():
                sql = str(stmt.compile(session.bind, compile_kwargs={"literal_binds": True}))
                lines = session.execute(sa.text(f"{explain} {sql}")).all()
                plans[name] = "\n".join(" ".join(str(c) for c in line) if len(line) > 1
                                        else str(line[0]) for line in lines)
            return plans


def split_history(campaign: str, records: Iterable[QueryRecord]) -> History:
    """``records`` (in id order) split by outcome into a :class:`History`."""
    completed, in_flight, failed = [], [], []
    for record in records:
        if record.status == "succeeded":
            completed.append(record)
        elif record.status in IN_FLIGHT:
            in_flight.append(record)
        else:
            failed.append(record)
    return History(campaign=campaign, completed=tuple(completed),
                   in_flight=tuple(in_flight), failed=tuple(failed))
