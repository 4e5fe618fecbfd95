"""Failure reasons grouped by cause: "12× HTTP 422: design must have shape [16], got [2]".

A stored failure reason names its query (idempotency key ``camp:3:17``, a lab job id, a uuid)
and per-query numbers (a measured value, a duration): two queries that failed for the same
cause have different reasons. :func:`failure_cause` replaces those parts with placeholders, in a
fixed order, so identical causes compare equal:

1. cut the per-query tails the command oracle appends (``| stderr tail: …``, ``; stdout head: …``);
2. uuids → ``<uuid>``; idempotency keys ``NAME:ROUND:INDEX`` → ``<key>``;
   a quoted job id after ``job`` / ``job id`` → ``<id>``;
3. hex ids (8+ hex digits, at least one digit and one letter) → ``<hex>``;
   integers of 5+ digits (pids, ports, job numbers) → ``<n>``;
4. durations (``12.5 s``, ``300ms``) → ``<t> s``; other decimal numbers → ``<x>``;
5. whitespace collapsed, capped at 200 characters.

Small integers stay: ``HTTP 422``, ``shape [16]``, ``exited with code 137`` are the cause.

>>> groups = group_failures([("c:0:1", "HTTP 422: design must have shape [16], got [2]"),
...                          ("c:0:2", "HTTP 422: design must have shape [16], got [2]"),
...                          ("c:1:0", "lab has no job 'a1b2c3d4e5' (HTTP 404)")])
>>> print(format_failure_groups(groups))
2× HTTP 422: design must have shape [16], got [2]
1× lab has no job <id> (HTTP 404)
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The cause of a failed query stored without a reason (cancelled queries may have none).
NO_REASON = "no reason recorded"
#: Longest cause kept (a reason may carry a whole traceback).
MAX_CAUSE_CHARS = 200
#: Longest example reason kept in a group.
MAX_EXAMPLE_CHARS = 500

_TAILS = re.compile(r"\s*(?:\|\s*stderr tail:|;\s*stdout head:).*\Z", re.DOTALL)
_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<uuid>"),
    (re.compile(r"[\w.\-]+:\d+:\d+\b"), "<key>"),
    (re.compile(r"\b(job(?: id)?) (['\"]).*?\2"), r"\1 <id>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![\w.])\d{5,}(?![\w.])"), "<n>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s*(?:ms|s|sec|seconds|min|minutes)\b"), "<t> s"),
    (re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])|"
                r"(?<![\w.])[-+]?\d+[eE][-+]?\d+(?![\w.])"), "<x>"),
    (re.compile(r"\s+"), " "),
)


@dataclass(frozen=True)
class FailureGroup:
    """Failed queries that share one cause.

    Attributes:
        cause: the normalized reason (see :func:`failure_cause`).
        count: how many queries failed with it.
        example_key: the first such query's idempotency key.
        example: that query's full reason (up to 500 characters), to read the details.
    """

    cause: str
    count: int
    example_key: str
    example: str


def failure_cause(reason: str | None) -> str:
    """The cause of one failure reason: per-query parts replaced by placeholders.

    >>> failure_cause("sim timed out after 12.5 s; its process group was killed | stderr tail: x")
    'sim timed out after <t> s; its process group was killed'
    >>> failure_cause("lab job 'j-91' belongs to key 'camp:3:17', not 'camp:3:18'")
    "lab job <id> belongs to key '<key>', not '<key>'"
    """
    if reason is None or not reason.strip():
        return NO_REASON
    text = _TAILS.sub("", reason)
    for pattern, placeholder in _SUBSTITUTIONS:
        text = pattern.sub(placeholder, text)
    text = text.strip() or NO_REASON
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 1] + "…"


def group_failures(reasons: Iterable[tuple[str, str | None]]) -> list[FailureGroup]:
    """Group ``(query key, reason)`` pairs by :func:`failure_cause`.

    Returns:
        One :class:`FailureGroup` per cause, most frequent first (ties: by cause, so the order
        is deterministic); the example is the first pair seen with that cause.

    >>> [g.count for g in group_failures([("c:0:0", "HTTP 500: boom"), ("c:0:1", "HTTP 500: boom")])]
    [2]
    """
    counts: dict[str, int] = {}
    examples: dict[str, tuple[str, str]] = {}
    for key, reason in reasons:
        cause = failure_cause(reason)
        counts[cause] = counts.get(cause, 0) + 1
        examples.setdefault(cause, (key, (reason or "")[:MAX_EXAMPLE_CHARS]))
    return [
        FailureGroup(cause=c, count=counts[c], example_key=examples[c][0], example=examples[c][1])
        for c in sorted(counts, key=lambda c: (-counts[c], c))
    ]


def format_failure_groups(groups: Sequence[FailureGroup], limit: int = 5) -> str:
    """One line per cause, ``"12× HTTP 422: …"``, at most ``limit`` lines plus a remainder line.

    Returns an empty string when there are no groups (the caller decides what "no failures"
    looks like).

    >>> g = [FailureGroup("HTTP 500: boom", 3, "c:0:0", "HTTP 500: boom"),
    ...      FailureGroup("poll failed: timeout", 1, "c:0:4", "poll failed: timeout")]
    >>> print(format_failure_groups(g, limit=1))
    3× HTTP 500: boom
    … and 1 more cause (1 failure)
    """
    if limit < 0:
        raise ValueError(f"limit: expected an integer >= 0, got {limit!r}")
    lines = [f"{g.count}× {g.cause}" for g in groups[:limit]]
    rest = groups[limit:]
    if rest:
        n = sum(g.count for g in rest)
        lines.append(f"… and {len(rest)} more cause{'s' if len(rest) > 1 else ''} "
                     f"({n} failure{'s' if n > 1 else ''})")
    return "\n".join(lines)
