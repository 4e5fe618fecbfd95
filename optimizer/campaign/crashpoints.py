"""Named crash points: the driver SIGKILLs itself at a chosen instant (for crash tests and drills).

``TILTLOOP_CRASH_AT=NAME`` (or ``NAME:N`` for the N-th time the point is reached, 1-based) makes
:func:`crash_point` kill the process with SIGKILL — no ``finally``, no flush, no atexit: exactly
what a power cut or the OOM killer does. Points, in the order a round reaches them:

- ``smc``: chunks handed to the Ray workers, particles not yet back;
- ``outbox``: round, candidates and queries committed, nothing sent to the oracle;
- ``submitted``: the oracle accepted a job, its job id is not yet stored;
- ``dispatched``: the job id is stored;
- ``polling``: a poll returned results that are not yet stored;
- ``delete`` (``tiltloop campaign delete``): reached after each campaign's rows are deleted
  inside the one uncommitted transaction (cheap oracles' logs first, then the campaign).

Unset (the normal case), a crash point costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV_VAR = "TILTLOOP_CRASH_AT"
POINTS = ("smc", "outbox", "submitted", "dispatched", "polling", "delete")
_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``TILTLOOP_CRASH_AT`` names this point (and its count is reached)."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
