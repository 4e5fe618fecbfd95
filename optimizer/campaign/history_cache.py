"""A campaign's history and rounds kept in memory by its driver, brought up to date by reading
only what changed since the last look.

Reading the whole history (and every round with its query keys) before each round made a
campaign's total read cost grow with the square of its length. A finished query never changes
again (terminal states have no way out), so the rows to re-read are:

1. queries with an id above the highest one seen (new rounds' outboxes), with their designs;
2. queries that were in flight when last read (results stored by this driver, by labs of a
   pull campaign, by an operator's ``tiltloop campaign cancel`` from another process), without
   designs (a design never changes); one of them gone was deleted with a discarded round;
3. rounds with an index above the highest one seen, after one ``(count, max index)`` aggregate
   that also shows when rounds were discarded (then the rounds are read again in full).

Ids arrive in order because a campaign's queries are inserted only by its one driver (the
campaign lease), a round's outbox in one transaction. A fresh process (``tiltloop resume``)
starts with an empty cache: its first refresh reads everything once.

>>> cache = HistoryCache(storage, "c1")           # doctest: +SKIP
>>> cache.refresh()                               # doctest: +SKIP
>>> cache.history().X(), cache.next_round_index   # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from storage import History, QueryRecord
from storage.history import split_history
from storage.records import IN_FLIGHT


class HistoryCache:
    """The in-memory history of campaign ``campaign`` (see the module docstring).

    Each :meth:`refresh` applies its reads only once they all succeeded, so a refresh cut by a
    lost connection and retried (the driver's ``OutageRetry`` units) ends in the same state.

    Args:
        storage: an open ``Storage``.
        campaign: the campaign's name.
    """

    def __init__(self, storage: Any, campaign: str) -> None:
        self.storage = storage
        self.campaign = campaign
        self._records: dict[int, QueryRecord] = {}  # by query id, in id order
        self._open: set[int] = set()  # ids in flight when last read
        self._last_id = 0
        self._sizes: Counter[int] = Counter()  # queries per round index
        self._history: History | None = None
        self._round_count = 0
        self._round_top = -1
        self._round_discards = 0  # rounds discarded so far (a replaced top round)
        self._tilted: list[int] = []
        #: rows read by the last :meth:`refresh` (queries and rounds): what the bench reports
        self.rows_read = 0

    def refresh(self) -> None:
        """Read the queries and rounds that changed since the last refresh (everything, the
        first time) and apply them."""
        self.rows_read = self._refresh_queries() + self._refresh_rounds()

    def _refresh_queries(self) -> int:
        changes = self.storage.history_changes(self.campaign, after_id=self._last_id,
                                               ids=sorted(self._open))
        returned = {qid for qid, _ in changes}
        gone = self._open - returned
        for qid in gone:  # its round was discarded
            self._sizes[self._records.pop(qid).round_index] -= 1
        for qid, record in changes:
            if qid <= self._last_id:  # re-read without its design, which never changes
                record = dataclasses.replace(record, design=self._records[qid].design)
            else:
                self._sizes[record.round_index] += 1
            self._records[qid] = record
        self._open = {qid for qid, record in changes if record.status in IN_FLIGHT}
        self._last_id = max(self._last_id, max(returned, default=0))
        if changes or gone:
            self._history = None
        return len(changes)

    def _refresh_rounds(self) -> int:
        count, top, discards = self.storage.round_tally_with_discards(self.campaign)
        if (count, top, discards) == (self._round_count, self._round_top, self._round_discards):
            return 1
        new = self.storage.list_rounds(self.campaign, after_index=self._round_top)
        read = 1 + len(new)
        if self._round_count + len(new) != count or discards != self._round_discards:
            # rounds were discarded (and maybe replaced): read them all
            new = self.storage.list_rounds(self.campaign)
            read += len(new)
            self._tilted = []
        self._tilted += [r.index for r in new if (r.summary or {}).get("tilted")]
        self._round_count, self._round_top, self._round_discards = count, top, discards
        return read

    def history(self) -> History:
        """The history as of the last :meth:`refresh`: equal to ``load_history(campaign)``
        read at that moment."""
        if self._history is None:
            self._history = split_history(self.campaign, self._records.values())
        return self._history

    @property
    def next_round_index(self) -> int:
        """The index the next round gets (one above the highest recorded)."""
        return self._round_top + 1

    @property
    def tilted_rounds(self) -> tuple[int, ...]:
        """Indices of the rounds whose summary says they were tilted, in index order."""
        return tuple(self._tilted)

    def round_sizes(self) -> dict[int, int]:
        """Number of queries of each round (the budget guard's failure fractions)."""
        return {r: n for r, n in self._sizes.items() if n > 0}
