"""Logging for the command line: WARNING and above on stderr by default, plain or JSON lines.

Every retry, give-up and pause is logged at WARNING with the campaign and the query key in the
message; ``--log-level INFO`` shows more, ``--log-json`` writes one JSON object per line for a log
collector (``{"time", "level", "logger", "message"}``).

    >>> configure_logging("INFO", json_lines=True)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "WARNING", *, json_lines: bool = False) -> None:
    """One stderr handler on the root logger (replacing the one an earlier call installed)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_tiltloop", False)]:
        root.removeHandler(h)
    handler = _Stderr()
    handler._tiltloop = True  # type: ignore[attr-defined]
    handler.setFormatter(_JsonLines() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
