"""The driver's side of a pull campaign (``[oracle] kind = "pull"``): labs claim and report
through the service (``Storage.claim_work`` / ``report_work``); the driver only reads what they
stored.

Same interface as :class:`~optimizer.campaign.dispatch.Dispatcher`, so the driver loop is
unchanged: ``dispatch`` sends nothing (queued queries wait in the outbox for a claim), ``poll``
returns the queries that labs finished since the last poll. "Since" is a cursor on the
campaign's append-only event log (every report writes one ``query.transition`` event in the
same transaction as the result), so a query created and reported between two polls is still
seen. Event ids come from a sequence, and two labs' transactions may commit out of id order, so
each poll re-reads a window of ``LOOKBACK_IDS`` ids below the cursor and keeps the keys already
seen: a query's final transition happens once, so it is reported once.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from optimizer.campaign.dispatch import PollOutcome
from storage import Storage

_FINAL = ("succeeded", "failed", "cancelled")
#: Ids re-read below the cursor: room for transactions that committed after later ones.
LOOKBACK_IDS = 500
_ACTIVE = ("pending", "dispatched", "running")


class PullDispatcher:
    """Reads lab reports of campaign ``campaign`` from ``storage``.

    Args:
        storage: the campaign's store.
        campaign: campaign name.
        objectives: the objective names the campaign records (``report_work`` checks values).
        on_change: called with a short message after each state change (progress output).
    """

    def __init__(self, storage: Storage, campaign: str, *, objectives: Sequence[str],
                 on_change: Callable[[str], None] | None = None) -> None:
        self.storage = storage
        self.campaign = campaign
        self.objectives = tuple(objectives)
        self._say = on_change or (lambda _msg: None)
        self._cursor: int | None = None
        self._seen: set[str] = set()

    def restore(self) -> int:
        """Start reading reports made from now on; returns the queries in flight (queued for or
        held by labs)."""
        self._cursor = self.storage.last_event_id(self.campaign)
        self._seen = {q.key for q in self.storage.list_queries(self.campaign, statuses=_FINAL)}
        return self.storage.in_flight_count(self.campaign)

    def dispatch(self) -> int:
        """Nothing is sent: labs claim queued queries themselves. Returns 0."""
        return 0

    def poll(self) -> PollOutcome:
        """The queries labs finished since the last poll, by final status."""
        if self._cursor is None:
            self.restore()
            return PollOutcome()
        events = self.storage.list_events(self.campaign, kind="query.transition",
                                          after_id=max(0, self._cursor - LOOKBACK_IDS))
        if not events:
            return PollOutcome()
        self._cursor = max(self._cursor, events[-1].id)
        out: dict[str, list[str]] = {s: [] for s in _FINAL}
        for ev in events:
            to, key = ev.payload.get("to"), str(ev.payload.get("key"))
            if to in out and ev.payload.get("from") in _ACTIVE and key not in self._seen:
                self._seen.add(key)
                out[to].append(key)
        outcome = PollOutcome(succeeded=tuple(out["succeeded"]), failed=tuple(out["failed"]),
                              cancelled=tuple(out["cancelled"]))
        if outcome.finished:
            self._say(f"{outcome.finished} quer{'y' if outcome.finished == 1 else 'ies'} "
                      f"reported by labs: {len(outcome.succeeded)} succeeded, "
                      f"{len(outcome.failed)} failed")
        return outcome

    def cancel_in_flight(self) -> list[str]:
        """Mark every query queued for or held by a lab ``cancelled`` (a later report of one is
        refused: the campaign no longer wants it)."""
        done = []
        for q in self.storage.list_queries(self.campaign, statuses=_ACTIVE):
            if self.storage.transition_query(q.key, expected=q.status, new="cancelled",
                                             error="campaign cancelled while queued for a lab"):
                done.append(q.key)
        return done

    def close(self) -> None:
        """Nothing to close (no oracle connection)."""
