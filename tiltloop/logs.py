"""Logging for the command line: WARNING and above on stderr by default, plain or JSON lines.

Every retry, give-up and pause is logged at WARNING with the campaign and the query key in the
message; ``--log-level INFO`` shows more, ``--log-json`` writes one JSON object per line for a log
collector (``{"time", "level", "logger", "message"}``, plus ``"campaign"`` and ``"key"`` when
known).

The campaign comes from :func:`campaign_context` (a ``contextvars`` variable, so each driver
thread of ``tiltloop serve`` tags its own lines) or from ``extra={"campaign": ...}``; the key
from ``extra={"key": ...}``. Plain lines end with ``[campaign]`` (``[campaign key=K]``).

    >>> configure_logging("INFO", json_lines=True)   # doctest: +SKIP
    >>> with campaign_context("c1"):                 # doctest: +SKIP
    ...     log.warning("retrying", extra={"key": "c1:0:3"})
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: The campaign the current thread (or task) works for; None outside any campaign.
_campaign: contextvars.ContextVar[str | None] = contextvars.ContextVar("tiltloop_campaign",
                                                                       default=None)


@contextmanager
def campaign_context(name: str) -> Iterator[None]:
    """Tag every record logged inside the block (in this thread or task) with campaign ``name``.

    A new thread starts with an empty context: run its target through
    ``contextvars.copy_context().run`` to keep the tag.
    """
    token = _campaign.set(name)
    try:
        yield
    finally:
        _campaign.reset(token)


def current_campaign() -> str | None:
    """The campaign of the current context (:func:`campaign_context`), or None."""
    return _campaign.get()


class _CampaignFilter(logging.Filter):
    """Sets ``record.campaign`` from the context unless the call passed ``extra={"campaign"}``;
    runs in the logging thread, where the context variable is the caller's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "campaign", None) is None:
            record.campaign = _campaign.get()
        return True


def _tags(record: logging.LogRecord) -> dict[str, str]:
    out: dict[str, str] = {}
    for field in ("campaign", "key"):
        value = getattr(record, field, None)
        if value is not None:
            out[field] = str(value)
    return out


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        doc.update(_tags(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = _tags(record)
        if not tags:
            return line
        label = " ".join(filter(None, [tags.get("campaign"),
                                       f"key={tags['key']}" if "key" in tags else None]))
        # the tag goes on the message line, before any traceback
        first, sep, rest = line.partition("\n")
        return f"{first} [{label}]{sep}{rest}"


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
    handler.addFilter(_CampaignFilter())
    handler.setFormatter(_JsonLines() if json_lines else _Plain(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
