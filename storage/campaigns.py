"""Campaigns: create by unique name, load to resume, update status / config / budget, delete."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.clock import db_now
from storage.config_versions import append_config_version
from storage.errors import CampaignBusy, CampaignExists, InvalidValue
from storage.models import CAMPAIGN_STATUSES, Base, Campaign, OracleQuery
from storage.records import IN_FLIGHT, CampaignRecord
from storage.session import StorageBase, check_json, check_name


def _record(row: Campaign) -> CampaignRecord:
    return CampaignRecord(
        name=row.name, status=row.status, config=row.config, budget=row.budget,
        created_at=row.created_at, updated_at=row.updated_at,
    )


def _check_budget(budget: int | None) -> int | None:
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise InvalidValue(f"budget: expected a non-negative integer or None, got {budget!r}")
    return budget


class CampaignsMixin(StorageBase):
    """Campaign rows."""

    def create_campaign(
        self, name: str, config: dict[str, Any], *, budget: int | None = None,
        status: str = "active",
    ) -> CampaignRecord:
        """Create a campaign; its ``config`` (JSON) is snapshotted so a resume rebuilds it.

        The config is also written as config version 1, in the same transaction. ``status``
        is the initial status (e.g. ``"paused"`` for a campaign no driver may pick up yet).

        Raises:
            CampaignExists: the name is taken (the message says how to resume it).

        >>> storage.create_campaign("ackley-01", {"alpha": 0.1}, budget=200)
        """
        check_name(name)
        check_json(config, field="config")
        _check_budget(budget)
        if status not in CAMPAIGN_STATUSES:
            raise InvalidValue(
                f"campaign status {status!r} is not one of {', '.join(CAMPAIGN_STATUSES)}"
            )
        with self.session() as session:
            existing = session.scalar(sa.select(Campaign).where(Campaign.name == name))
            if existing is not None:
                raise CampaignExists(
                    f"campaign {name!r} already exists (status {existing.status}, created "
                    f"{existing.created_at:%Y-%m-%d %H:%M:%S}); resume it with "
                    f"`tiltloop resume {name}` (load_campaign({name!r})) or choose another name"
                )
            row = Campaign(name=name, config=config, budget=budget, status=status)
            session.add(row)
            session.flush()
            append_config_version(session, campaign=name, campaign_id=row.id, config=config,
                                  note=None)
            self._log(session, row.id, "campaign.created",
                      {"config": config, "budget": budget, "status": status})
            session.refresh(row)
            return _record(row)

    def load_campaign(self, name: str) -> CampaignRecord:
        """The campaign called ``name``; :class:`NotFound` lists existing names if absent."""
        with self.session() as session:
            cid = self._campaign_id(session, name)
            return _record(session.get_one(Campaign, cid))

    def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""
        with self.session() as session:
            rows = session.scalars(sa.select(Campaign).order_by(Campaign.id)).all()
            return [_record(r) for r in rows]

    def update_campaign(
        self,
        name: str,
        *,
        status: str | None = None,
        config: dict[str, Any] | None = None,
        budget: int | None = None,
    ) -> CampaignRecord:
        """Change status, replace the config or set the budget (e.g. extend it); logs an event.

        A new ``config`` is appended as the next config version (see :meth:`add_config_version`)
        in the same transaction, so ``campaign.config`` stays the newest version.
        """
        if status is not None and status not in CAMPAIGN_STATUSES:
            raise InvalidValue(
                f"campaign status {status!r} is not one of {', '.join(CAMPAIGN_STATUSES)}"
            )
        if config is not None:
            check_json(config, field="config")
        _check_budget(budget)
        changes: dict[str, Any] = {
            k: v for k, v in (("status", status), ("config", config), ("budget", budget))
            if v is not None
        }
        with self.session() as session:
            cid = self._campaign_id(session, name)
            if changes:
                session.execute(
                    sa.update(Campaign).where(Campaign.id == cid).values(**changes, updated_at=db_now())
                )
                self._log(session, cid, "campaign.updated", changes)
            if config is not None:
                added = append_config_version(session, campaign=name, campaign_id=cid,
                                              config=config, note="set by update_campaign")
                self._log(session, cid, "campaign.config_changed", {
                    "old_version": added.version - 1, "new_version": added.version})
            row = session.get_one(Campaign, cid, populate_existing=True)
            return _record(row)

    def delete_campaign(self, name: str, *, allow_in_flight: bool = False) -> dict[str, int]:
        """Delete campaign ``name`` and every row under it, in one transaction.

        Rows under it: every table with a foreign-key path to ``campaign`` (config versions,
        rounds, candidates, oracle queries with their leases, events, and any table added
        later), found from the models. Returns the rows deleted per table, e.g.
        ``{"campaign": 1, "campaign_config": 2, "round": 3, "candidate": 24, ...}``.

        1. lock the campaign row and its in-flight queries (Postgres ``FOR UPDATE``; SQLite
           writers are serialised by ``BEGIN IMMEDIATE``), so no query is dispatched meanwhile;
        2. refuse (:class:`CampaignBusy`) while queries are pending / dispatched / running,
           unless ``allow_in_flight``: their results would be lost;
        3. count the rows of each table, delete the campaign row, then each table's rows
           explicitly (leaves first): ON DELETE CASCADE already removed them where foreign keys
           are enforced, and the explicit deletes make it hold where they are not (an SQLite
           connection without ``PRAGMA foreign_keys = ON``). Events can be deleted only once
           their campaign row is gone (a trigger keeps the log append-only otherwise).

        The campaign's audit log goes with it: log the deletion elsewhere if it must be kept.
        """
        return self.delete_campaigns([name], allow_in_flight=allow_in_flight)

    def delete_campaigns(self, names: Sequence[str], *, allow_in_flight: bool = False,
                         after_each: Callable[[str], None] | None = None) -> dict[str, int]:
        """Delete campaigns ``names`` (in that order) and every row under them, all in ONE
        transaction: a crash or an error midway (another campaign busy, a lost connection)
        leaves every one of them as it was. Each campaign is deleted as
        :meth:`delete_campaign` describes; returns the rows deleted per table, summed.
        ``after_each(name)`` runs inside the transaction after each campaign's rows are gone
        (crash drills: ``optimizer.campaign.crashpoints``).

        Raises:
            NotFound: a name is not a campaign (nothing is deleted).
            CampaignBusy: one of them has queries in flight and not ``allow_in_flight``.
        """
        counts: dict[str, int] = {}
        with self.session() as session:
            for name in names:
                for table, n in self._delete_one(session, name, allow_in_flight).items():
                    counts[table] = counts.get(table, 0) + n
                if after_each is not None:
                    after_each(name)
        return counts

    def _delete_one(self, session: Session, name: str, allow_in_flight: bool) -> dict[str, int]:
        """:meth:`delete_campaign`'s steps inside ``session`` (the caller's transaction)."""
        cid = session.scalar(sa.select(Campaign.id).where(Campaign.name == name)
                             .with_for_update())
        if cid is None:
            cid = self._campaign_id(session, name)  # raises NotFound with the known names
        in_flight = session.scalars(
            sa.select(OracleQuery.idempotency_key)
            .where(OracleQuery.campaign_id == cid, OracleQuery.status.in_(IN_FLIGHT))
            .order_by(OracleQuery.id).with_for_update()
        ).all()
        if in_flight and not allow_in_flight:
            shown = ", ".join(in_flight[:5]) + (", ..." if len(in_flight) > 5 else "")
            raise CampaignBusy(
                f"campaign {name!r} has {len(in_flight)} queries in flight (pending, "
                f"dispatched or running: {shown}); wait for them or cancel them first, or "
                f"delete anyway with allow_in_flight=True (their results will be lost)"
            )
        scopes = _owned_rows(cid)
        counts = {"campaign": 1}
        for table, where in scopes:
            counts[table.name] = int(session.scalar(
                sa.select(sa.func.count()).select_from(table).where(where)) or 0)
        session.execute(sa.delete(Campaign).where(Campaign.id == cid))
        for table, where in reversed(scopes):
            session.execute(sa.delete(table).where(where))
        return counts


def _owned_rows(campaign_id: int) -> list[tuple[sa.Table, sa.ColumnElement[bool]]]:
    """Every table whose rows belong to a campaign, parents before children, each with the
    condition selecting campaign ``campaign_id``'s rows (through a direct ``campaign_id``
    foreign key where the table has one, else through its owned parent)."""
    campaign = Campaign.__table__
    scopes: dict[sa.Table, sa.ColumnElement[bool]] = {}
    for table in Base.metadata.sorted_tables:
        if table is campaign:
            continue
        keys = sorted(table.foreign_keys, key=lambda fk: fk.column.table is not campaign)
        for fk in keys:
            parent = fk.column.table
            if parent is campaign:
                scopes[table] = fk.parent == campaign_id
                break
            if parent in scopes:
                scopes[table] = fk.parent.in_(sa.select(fk.column).where(scopes[parent]))
                break
    return list(scopes.items())
