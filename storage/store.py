"""``Storage``: the repository facade the campaign loop talks to.

>>> with Storage.open("sqlite:///tiltloop.db") as storage:
...     storage.create_campaign("c1", {"alpha": 0.1})
...     storage.record_round("c1", 0, alpha=0.1, candidates=[NewCandidate(x) for x in X],
...                          selected=[0, 1], oracle_name="lab")
...     history = storage.load_history("c1")
"""
from __future__ import annotations

from types import TracebackType

from sqlalchemy.engine import URL

from storage import migrate
from storage.campaigns import CampaignsMixin
from storage.columns import ColumnsMixin
from storage.config_versions import ConfigVersionsMixin
from storage.engine import connect_check, create_engine
from storage.events import EventsMixin
from storage.history import HistoryMixin
from storage.leases import LeasesMixin
from storage.pull import PullMixin
from storage.queries import QueriesMixin
from storage.rounds import RoundsMixin
from storage.tokens import TokensMixin


class Storage(CampaignsMixin, ConfigVersionsMixin, RoundsMixin, QueriesMixin, HistoryMixin,
              ColumnsMixin, EventsMixin, LeasesMixin, TokensMixin, PullMixin):
    """Campaigns, rounds, candidates, oracle queries, events, campaign leases, API tokens and
    pull-API claims over one engine.

    Every method is one transaction (see :meth:`session`); errors are :mod:`storage.errors`.
    """

    @classmethod
    def open(
        cls,
        url: str | URL,
        *,
        check_schema: bool = True,
        actor: str | None = None,
        echo: bool = False,
    ) -> Storage:
        """Validate ``url``, connect once and (by default) refuse a schema that is not at head.

        Raises:
            InvalidDatabaseURL, DatabaseUnreachable, SchemaNotInitialized, SchemaOutOfDate,
            SchemaTooNew — each with one line naming the problem and the remedy.
        """
        engine = create_engine(url, echo=echo)
        try:
            connect_check(engine)
            if check_schema:
                migrate.check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, actor=actor)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_storage(url: str | URL, *, check_schema: bool = True, actor: str | None = None) -> Storage:
    """Shorthand for :meth:`Storage.open`."""
    return Storage.open(url, check_schema=check_schema, actor=actor)
