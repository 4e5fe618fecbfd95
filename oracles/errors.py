"""The oracle room's error hierarchy.

Every message names the field, file, line or query it is about, the offending value when that is
safe to show (never a secret), and the remedy. The campaign loop never sees these escape an oracle
call: ``oracles.safe.SafeOracle`` turns them into failed (or still-pending) queries with a reason.
"""
from __future__ import annotations

from tiltloop.errors import TiltloopError


class OracleError(TiltloopError):
    """Base class of every error raised by ``oracles``."""


class OracleConfigError(OracleError, ValueError):
    """An oracle was configured wrongly (unknown kind, bad field, unreadable token file...)."""


class OracleTransientError(OracleError):
    """A temporary failure (connection lost, 5xx, 429 after all retries): the same call may succeed
    later, so a query that met it is kept pending or resubmitted with the SAME idempotency key."""


class OracleRejectedError(OracleError):
    """The oracle refused a request for good (a 4xx reply other than 404/408/429): retrying the same
    request cannot help; the query is failed with this reason."""


class OracleReplyError(OracleError):
    """The oracle's reply could not be understood (not JSON, wrong shape, wrong types)."""


class ManualResultsError(OracleError, ValueError):
    """A results file for the manual oracle is malformed; nothing of it was imported.

    Attributes:
        path: the file.
        problems: ``(line, message)`` pairs, one per bad row, line numbers 1-based.
    """

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        shown = "\n".join(f"  {path}, line {line}: {msg}" for line, msg in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"results file {path} rejected ({len(self.problems)} problem(s)); nothing was "
            f"imported. Fix these rows and import the file again:\n{shown}{more}"
        )
