"""Campaign leases: which replica (or CLI run) drives a campaign, timed by the database clock.

A campaign is driven only by the holder of its live lease. Every write is conditional, so two
writers can never both hold one campaign:

- take: the row is locked (Postgres ``FOR UPDATE``; SQLite transactions start with
  ``BEGIN IMMEDIATE``), then `UPDATE … WHERE campaign_id = :c AND (owner = :me OR expires_at <
  now)`, or, with no row yet, `INSERT … ON CONFLICT DO NOTHING` (a concurrent insert wins);
- heartbeat: `UPDATE … WHERE owner = :me AND expires_at >= now` (an expired lease is lost,
  even if nobody took it yet: take it again with :meth:`acquire_campaign_lease`);
- release: `DELETE … WHERE owner = :me`.

"now" is always the database's clock (:mod:`storage.clock`), never the host's.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.clock import db_now, db_now_plus
from storage.errors import InvalidValue
from storage.models import Campaign, CampaignLease
from storage.records import LeaseRecord
from storage.session import StorageBase

#: The most campaigns one :meth:`acquire_free_campaigns` call may take.
MAX_FREE_LIMIT = 1000


def insert_ignoring_conflicts(session: Session, table: type) -> sa.Insert:
    """`INSERT … ON CONFLICT DO NOTHING` for the session's backend."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def check_owner(owner: str, *, field: str = "owner") -> str:
    """A non-empty name of at most 200 characters; else :class:`InvalidValue`."""
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200:
        raise InvalidValue(
            f"{field}: expected a non-empty name of at most 200 characters, got {owner!r}"
        )
    return owner


def check_seconds(value: float, *, field: str, maximum: float = 86_400) -> float:
    """A duration > 0 and at most ``maximum`` seconds (a day); else :class:`InvalidValue`."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value <= maximum):
        raise InvalidValue(f"{field}: expected seconds > 0 and <= {maximum:.0f}, got {value!r}")
    return float(value)


_LEASE_COLUMNS = (
    Campaign.name, CampaignLease.owner, CampaignLease.acquired_at, CampaignLease.heartbeat_at,
    CampaignLease.expires_at, (CampaignLease.expires_at >= db_now()).label("live"),
)


def _lease_record(row: sa.Row) -> LeaseRecord:
    return LeaseRecord(campaign=row.name, owner=row.owner, acquired_at=row.acquired_at,
                       heartbeat_at=row.heartbeat_at, expires_at=row.expires_at,
                       live=bool(row.live))


class LeasesMixin(StorageBase):
    """Campaign leases for the service's scheduler and the CLI driver."""

    def acquire_campaign_lease(self, name: str, owner: str, ttl_s: float) -> LeaseRecord | None:
        """Take (or renew) campaign ``name``'s lease for ``owner`` until database now + ``ttl_s``.

        Taken when the campaign has no lease, its lease expired, or ``owner`` already holds it
        (then it is renewed and ``acquired_at`` kept). A change of owner is logged as a
        ``campaign.lease`` event naming the previous owner.

        Returns:
            The lease now held, or None while another owner holds a live lease.

        Raises:
            NotFound: no campaign ``name``. InvalidValue: a bad owner or ttl.
        """
        check_owner(owner)
        ttl = check_seconds(ttl_s, field="ttl_s")
        with self.session() as session:
            cid = self._campaign_id(session, name)
            if not self._take(session, cid, owner, ttl):
                return None
            return self._lease(session, cid)

    def heartbeat_campaign_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s live lease to database now + ``ttl_s``.

        Returns:
            False when the lease is lost: another owner holds it, it was released, or it
            expired (call :meth:`acquire_campaign_lease` to take it again, then re-read the
            campaign's state before driving it).
        """
        check_owner(owner)
        ttl = check_seconds(ttl_s, field="ttl_s")
        with self.session() as session:
            cid = self._campaign_id(session, name)
            done = cast("sa.CursorResult[Any]", session.execute(
                sa.update(CampaignLease)
                .where(CampaignLease.campaign_id == cid, CampaignLease.owner == owner,
                       CampaignLease.expires_at >= db_now())
                .values(heartbeat_at=db_now(), expires_at=db_now_plus(ttl))
            ))
            return bool(done.rowcount)

    def release_campaign_lease(self, name: str, owner: str) -> bool:
        """Give campaign ``name``'s lease up; False if ``owner`` does not hold it."""
        check_owner(owner)
        with self.session() as session:
            cid = self._campaign_id(session, name)
            done = cast("sa.CursorResult[Any]", session.execute(
                sa.delete(CampaignLease)
                .where(CampaignLease.campaign_id == cid, CampaignLease.owner == owner)
            ))
            if done.rowcount:
                self._log(session, cid, "campaign.lease_released", {"owner": owner})
            return bool(done.rowcount)

    def campaign_lease(self, name: str) -> LeaseRecord | None:
        """Campaign ``name``'s lease (live or expired, see ``live``), or None if it has none."""
        with self.session() as session:
            return self._lease(session, self._campaign_id(session, name))

    def acquire_free_campaigns(self, owner: str, ttl_s: float, limit: int, *,
                               exclude: Collection[str] = ()) -> list[str]:
        """Take the leases of up to ``limit`` active campaigns that have no live lease.

        For a replica's scheduler: one transaction that locks the chosen campaign rows
        (Postgres ``FOR UPDATE OF campaign SKIP LOCKED``, so replicas pick disjoint sets without
        waiting; SQLite serialises writers), then takes each lease with the same conditional
        statements as :meth:`acquire_campaign_lease`: a campaign is never handed to two owners.
        Campaigns whose live lease ``owner`` already holds are not returned (they are not free),
        nor those named in ``exclude`` (a scheduler backing off a campaign whose driver failed).

        Returns:
            The names of the campaigns taken, oldest campaign first.
        """
        check_owner(owner)
        ttl = check_seconds(ttl_s, field="ttl_s")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FREE_LIMIT:
            raise InvalidValue(f"limit: expected an integer from 1 to {MAX_FREE_LIMIT}, "
                               f"got {limit!r}")
        skip = sorted({str(name) for name in exclude})
        with self.session() as session:
            free = session.execute(
                sa.select(Campaign.id, Campaign.name)
                .outerjoin(CampaignLease, CampaignLease.campaign_id == Campaign.id)
                .where(Campaign.status == "active",
                       sa.or_(CampaignLease.id.is_(None), CampaignLease.expires_at < db_now()),
                       Campaign.name.not_in(skip) if skip else sa.true())
                .order_by(Campaign.id).limit(limit)
                .with_for_update(of=Campaign, skip_locked=True)
            ).all()
            return [name for cid, name in free if self._take(session, cid, owner, ttl)]

    def _take(self, session: Session, cid: int, owner: str, ttl: float) -> bool:
        """Take campaign ``cid``'s lease for ``owner`` if free, expired or ours (conditional)."""
        current = session.execute(
            sa.select(CampaignLease.owner, (CampaignLease.expires_at < db_now()).label("expired"))
            .where(CampaignLease.campaign_id == cid).with_for_update()
        ).first()
        if current is None:
            taken = session.execute(
                insert_ignoring_conflicts(session, CampaignLease)
                .values(campaign_id=cid, owner=owner, acquired_at=db_now(),
                        heartbeat_at=db_now(), expires_at=db_now_plus(ttl))
                .returning(CampaignLease.id)
            ).first()
            if taken is None:  # a concurrent writer inserted it first: theirs
                return False
            self._log(session, cid, "campaign.lease", {"owner": owner, "previous_owner": None})
            return True
        if current.owner != owner and not current.expired:
            return False
        same = current.owner == owner
        taken = session.execute(
            sa.update(CampaignLease)
            .where(CampaignLease.campaign_id == cid,
                   sa.or_(CampaignLease.owner == owner, CampaignLease.expires_at < db_now()))
            .values(owner=owner, heartbeat_at=db_now(), expires_at=db_now_plus(ttl),
                    acquired_at=CampaignLease.acquired_at if same else db_now())
            .returning(CampaignLease.id)
        ).first()
        if taken is None:
            return False
        if not same:
            self._log(session, cid, "campaign.lease",
                      {"owner": owner, "previous_owner": current.owner})
        return True

    def _lease(self, session: Session, cid: int) -> LeaseRecord | None:
        row = session.execute(
            sa.select(*_LEASE_COLUMNS).join(Campaign, Campaign.id == CampaignLease.campaign_id)
            .where(CampaignLease.campaign_id == cid)
        ).first()
        return None if row is None else _lease_record(row)
