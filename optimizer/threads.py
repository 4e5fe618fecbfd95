"""Torch intra-op threads for one block of code (one helper for the whole optimizer).

Small ops (a surrogate's few-thousand-row matrices, a small MLP's layers) are microseconds long;
on a shared, oversubscribed CPU every one of them waits at a thread barrier for a descheduled
sibling, so one or two threads are several times faster than the default pool: measured 0.7 s vs
7 s for one q=16 screening of 1,024 particles (bench/loop_overhead.py).

    >>> with torch_threads(1):
    ...     train()          # the thread count is restored afterwards, even on an exception
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (at least 1; None: leave the count as it
    is), then restore the previous count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
