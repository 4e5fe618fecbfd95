"""Count the SELECT statements (and, where the driver knows them, rows) an engine runs: how the
incremental readers' cost is measured (bench/driver_reads.py, tests of the history cache).

    >>> with ReadCounter(storage.engine) as reads:   # doctest: +SKIP
    ...     storage.load_history("c1")
    >>> reads.statements, reads.rows                # doctest: +SKIP
    (1, 10000)
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa


class ReadCounter:
    """Statements and rows read through ``engine`` while the context is open (rows: on Postgres,
    whose cursor reports them; SQLite reports -1 for a SELECT, counted as 0)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.statements, self.rows = engine, 0, 0

    def _after(self, conn: Any, cursor: Any, statement: str, *_a: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.statements += 1
            self.rows += max(cursor.rowcount, 0)

    def __enter__(self) -> ReadCounter:
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc: Any) -> None:
        sa.event.remove(self.engine, "after_cursor_execute", self._after)
