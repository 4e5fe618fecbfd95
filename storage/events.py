"""The append-only audit log: the API offers no update and no delete of events."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage.errors import InvalidValue
from storage.models import Event
from storage.records import EventRecord
from storage.session import StorageBase, check_json


class EventsMixin(StorageBase):
    """Audit events."""

    def log_event(self, campaign: str, kind: str, payload: dict[str, Any] | None = None) -> None:
        """Append ``(actor, kind, payload)`` to the campaign's log, stamped by the database clock.

        >>> storage.log_event("c1", "loop.paused", {"reason": "budget reached"})
        """
        if not isinstance(kind, str) or not 0 < len(kind) <= 64:
            raise InvalidValue(f"event kind: expected 1-64 characters, got {kind!r}")
        check_json(payload, field="event payload")
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            self._log(session, cid, kind, payload or {})

    def last_event_id(self, campaign: str) -> int:
        """The id of the campaign's latest event (0 when it has none): a live reader's cursor."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            return int(session.scalar(sa.select(sa.func.max(Event.id))
                                      .where(Event.campaign_id == cid)) or 0)

    def list_events(
        self, campaign: str, *, kind: str | None = None, limit: int | None = None,
        after_id: int | None = None,
    ) -> list[EventRecord]:
        """The campaign's events in the order they were written (optionally one kind, first N,
        only those with an id above ``after_id``: a live reader's cursor)."""
        with self.session() as session:
            cid = self._campaign_id(session, campaign)
            stmt = sa.select(Event).where(Event.campaign_id == cid).order_by(Event.id)
            if kind is not None:
                stmt = stmt.where(Event.kind == kind)
            if after_id is not None:
                stmt = stmt.where(Event.id > after_id)
            if limit is not None:
                stmt = stmt.limit(limit)
            return [
                EventRecord(id=e.id, campaign=campaign, kind=e.kind, actor=e.actor,
                            payload=e.payload, created_at=e.created_at)
                for e in session.scalars(stmt).all()
            ]
