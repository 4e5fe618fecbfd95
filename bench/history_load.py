"""The driver's history load at start / resume, row-wise (before) vs columnar (after), on Postgres,
and its reads per round afterwards.

1. for each size in ``--sizes`` (queries of 32 float32 designs, two objective values, one noise
   value): what a fresh driver does before its first round, timed end to end:
   before: ``HistoryCache.refresh()`` (one ``QueryRecord`` per query) + ``rounds.training_data``
   over the row-wise ``History``; after: ``ColumnarHistoryCache.refresh()`` (arrays) +
   ``training_data`` over the columns. Both orders alternate within each repeat (interleaved),
   ``--repeat`` times; median and best wall, median process CPU (this process: the client; the
   Postgres server's time shows in wall). The training arrays are checked equal both ways.
   Also the storage calls alone: ``load_history`` vs ``history_columns``.
2. rows the columnar cache and ``alpha = "auto"``'s inputs read per round at campaign lengths
   ``--lengths`` (rounds of 100 queries; per step one new round of 4 queries, 2 finished, the
   previous round's other 2 failed and the round closed),
   counted at the DBAPI cursor (``storage.read_counter``).

    .venv/bin/python bench/history_load.py [--sizes 10000 100000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from driver_reads import PG_URL, _seed
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.history_arrays import ColumnarHistoryCache, auto_inputs
from optimizer.campaign.history_cache import HistoryCache
from optimizer.campaign.rounds import TrainingData, training_data
from storage import NewCandidate, Storage, upgrade
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


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _same(a: TrainingData, b: TrainingData) -> None:
    for f in ("X", "Y", "X_pending", "X_failed"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f
    assert (a.Yvar is None) == (b.Yvar is None)


def loads(storage: Storage, sizes: list[int], repeat: int) -> None:
    print(f"\n1. driver start: history load + training data on Postgres ({repeat} interleaved "
          f"repeats; wall median / best, client CPU median, seconds)")
    print(f"{'queries':>8} {'path':<28} {'before wall':>11} {'best':>6} {'cpu':>6} "
          f"{'after wall':>10} {'best':>6} {'cpu':>6} {'wall x':>7} {'cpu x':>6}")
    for n in sizes:
        name = f"h{n}"
        _seed(storage, name, n, min(n, 10_000), n)
        cfg = _config(name)
        _same(before(storage, name, cfg), after(storage, name, cfg))
        paths = {
            "driver: cache + training": (functools.partial(before, storage, name, cfg),
                                         functools.partial(after, storage, name, cfg)),
            "storage: rows vs columns": (functools.partial(storage.load_history, name),
                                         functools.partial(storage.history_columns, name,
                                                           fields=FIELDS)),
        }
        for label, (old, new) in paths.items():
            got: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for r in range(repeat):
                order = [("before", old), ("after", new)]
                for key, fn in (order if r % 2 == 0 else order[::-1]):
                    got[key].append(_timed(fn))
            (bw, bc), (aw, ac) = ([statistics.median(x[i] for x in got[k]) for i in (0, 1)]
                                  for k in ("before", "after"))
            bb, ab = min(w for w, _ in got["before"]), min(w for w, _ in got["after"])
            print(f"{n:>8} {label:<28} {bw:>11.3f} {bb:>6.3f} {bc:>6.3f} {aw:>10.3f} {ab:>6.3f} "
                  f"{ac:>6.3f} {bw / aw:>7.1f} {bc / ac:>6.1f}", flush=True)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=PG_URL)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(args.postgres).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = sa.make_url(args.postgres).set(drivername="postgresql+psycopg")
    url_text = url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    print(f"load before: {open('/proc/loadavg').read().strip()}")
    try:
        upgrade(url_text)
        with Storage.open(url_text, actor="bench") as storage:
            loads(storage, args.sizes, args.repeat)
            round_reads(storage, args.lengths)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"load after: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
