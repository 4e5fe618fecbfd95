"""The driver's history load at start / resume, row-wise (before) vs columnar (after), on Postgres,
and its reads per round afterwards.

1. for each size in ``--sizes`` (queries of 32 float32 designs, two objective values, one noise
   value): what a fresh driver does before its first round, timed end to end:
   before: ``HistoryCache.refresh()`` (one ``QueryRecord`` per query) + ``rounds.training_data``
   over the row-wise ``History``; after: ``ColumnarHistoryCache.refresh()`` (arrays) +
   ``training_data`` over the columns. Both orders alternate within each repeat (interleaved),
   ``--repeat`` times; median and best wall, median CPU of this process (the client) and of
   the Postgres backends serving it (the server runs here: ``/proc``; parallel query off so that
   no worker escapes the count). The training arrays are checked equal both ways.
   Also the storage calls alone: ``load_history`` vs ``history_columns``.
2. rows the columnar cache and ``alpha = "auto"``'s inputs read per round at campaign lengths
   ``--lengths`` (rounds of 100 queries; per step one new round of 4 queries, 2 finished, the
   previous round's other 2 failed and the round closed),
   counted at the DBAPI cursor (``storage.read_counter``).

    .venv/bin/python bench/history_load.py [--sizes 10000 100000] [--repeat 3]
"""
from __future__ import annotations

import functools
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg

from driver_reads import _seed, bench_schema, sizes_args
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.history_arrays import ColumnarHistoryCache, auto_inputs
from optimizer.campaign.history_cache import HistoryCache
from optimizer.campaign.rounds import TrainingData, training_data
from storage import NewCandidate, Storage
from storage.read_counter import ReadCounter

FIELDS = ["y", "cost"]


def _config(name: str) -> Any:
    return parse_config({
        "name": name, "prior": {"name": "gmm-toy"},
        "oracle": {"kind": "http", "options": {"base_url": "http://127.0.0.1:9", "objectives": FIELDS}},
        "objectives": [{"name": "y"}, {"name": "cost", "direction": "minimize"}]}, "bench")


def before(storage: Storage, name: str, cfg: Any) -> TrainingData:
    cache = HistoryCache(storage, name)
    cache.refresh()
    return training_data(cache.history(), cfg)


def after(storage: Storage, name: str, cfg: Any) -> TrainingData:
    cache = ColumnarHistoryCache(storage, name, fields=FIELDS)
    cache.refresh()
    return training_data(cache.columns(), cfg)


class ServerCPU:
    """CPU seconds of the Postgres backends serving this bench's connections (found by their
    ``application_name`` in ``pg_stat_activity``, read from ``/proc/PID/stat``: the server runs
    on this machine). Parallel query workers are short-lived processes this cannot see, so the
    bench's connections run with ``max_parallel_workers_per_gather = 0``."""

    def __init__(self, admin: str, app: str) -> None:
        self.conn = psycopg.connect(admin, autocommit=True, application_name="tl_bench_admin")
        self.app, self.tick = app, os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        pids = [r[0] for r in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,))]
        total = 0
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:  # not on this machine, or gone
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.tick


SERVER: ServerCPU | None = None


def _timed(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """``(wall, client CPU, server CPU)`` seconds of ``fn()``."""
    server = SERVER() if SERVER is not None else 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, (SERVER() - server if SERVER is not None else math.nan)


def _same(a: TrainingData, b: TrainingData) -> None:
    for f in ("X", "Y", "X_pending", "X_failed"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f
    assert (a.Yvar is None) == (b.Yvar is None)


def loads(storage: Storage, sizes: list[int], repeat: int) -> None:
    print(f"\n1. driver start: history load + training data on Postgres ({repeat} interleaved "
          f"repeats; medians of wall, client CPU and server CPU, best wall; seconds)")
    print(f"{'queries':>8} {'path':<26} {'before wall':>11} {'best':>6} {'cpu':>6} {'srv':>6} "
          f"{'after wall':>10} {'best':>6} {'cpu':>6} {'srv':>6} {'wall x':>6} {'cpu+srv x':>9}")
    for n in sizes:
        name = f"h{n}"
        _seed(storage, name, n, min(n, 10_000), n)
        cfg = _config(name)
        _same(before(storage, name, cfg), after(storage, name, cfg))
        paths: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "driver: cache + training": (functools.partial(before, storage, name, cfg),
                                         functools.partial(after, storage, name, cfg)),
            "storage: rows vs columns": (functools.partial(storage.load_history, name),
                                         functools.partial(storage.history_columns, name,
                                                           fields=FIELDS)),
        }
        for label, (old, new) in paths.items():
            got: dict[str, list[tuple[float, float, float]]] = {"before": [], "after": []}
            for r in range(repeat):
                order: list[tuple[str, Callable[[], Any]]] = [("before", old), ("after", new)]
                for key, fn in (order if r % 2 == 0 else order[::-1]):
                    got[key].append(_timed(fn))
            (bw, bc, bs), (aw, ac, as_) = ([statistics.median(x[i] for x in got[k]) for i in (0, 1, 2)]
                                           for k in ("before", "after"))
            bb, ab = min(x[0] for x in got["before"]), min(x[0] for x in got["after"])
            print(f"{n:>8} {label:<26} {bw:>11.3f} {bb:>6.3f} {bc:>6.3f} {bs:>6.3f} {aw:>10.3f} "
                  f"{ab:>6.3f} {ac:>6.3f} {as_:>6.3f} {bw / aw:>6.1f} {(bc + bs) / (ac + as_):>9.1f}",
                  flush=True)


def round_reads(storage: Storage, lengths: list[int]) -> None:
    print("\n2. rows read per round by the columnar cache + alpha-auto inputs (rounds of 100)")
    print(f"{'queries':>8} {'statements':>10} {'rows per round (3 rounds)':>26}")
    rng = np.random.default_rng(0)
    for n in lengths:
        name = f"r{n}"
        _seed(storage, name, n, 100, n + 7)
        cache = ColumnarHistoryCache(storage, name, fields=FIELDS)
        cache.refresh()
        auto_inputs(cache, "y", True)
        counts = []
        rest: list[str] = []
        for _ in range(3):
            index = cache.next_round_index
            for key in rest:  # the previous round's rest fails and the round closes, as in a run
                storage.transition_query(key, expected="pending", new="failed", error="lab: timeout")
            if rest:
                storage.update_round(name, index - 1, status="complete")
            keys = storage.record_round(name, index, alpha=0.1, candidates=[
                NewCandidate(x) for x in rng.normal(size=(4, 32)).astype(np.float32)],
                selected=[0, 1, 2, 3], oracle_name="lab", summary={"tilted": True}).query_keys
            for key in keys[:2]:
                storage.transition_query(key, expected="pending", new="dispatched")
                storage.transition_query(key, expected="dispatched", new="succeeded",
                                         values={"y": float(rng.normal()), "cost": 1.0})
            rest = list(keys[2:])
            with ReadCounter(storage.engine) as reads:
                cache.refresh()
                auto_inputs(cache, "y", True)
            counts.append((reads.statements, reads.rows))
        print(f"{n:>8} {counts[-1][0]:>10} {str([r for _, r in counts]):>26}", flush=True)


def main() -> None:
    args = sizes_args(__doc__)
    app = f"tl_bench_{uuid.uuid4().hex[:12]}"
    global SERVER
    with bench_schema(args.postgres, options="-cmax_parallel_workers_per_gather=0",
                      application_name=app) as (url_text, admin):
        SERVER = ServerCPU(admin, app)
        with Storage.open(url_text, actor="bench") as storage:
            loads(storage, args.sizes, args.repeat)
            round_reads(storage, args.lengths)


if __name__ == "__main__":
    main()
