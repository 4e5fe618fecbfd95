"""Storage throughput and history load time, Postgres and SQLite side by side.

For each backend (a fresh Postgres schema, a fresh SQLite file):

1. ``record_round`` with N candidates, all selected → N candidates + N outbox queries written
   in one transaction; prints rows/s (goal: ≥ 5,000 rows/s);
2. the same number of rows written row by row (one INSERT per row, ORM flush) on a slice, for
   the bulk / row-by-row ratio;
3. a sample of conditional transitions through the API (transitions/s);
4. every query marked succeeded (one SQL UPDATE, setup only), then ``load_history`` timed
   (best of 3; goal on Postgres: 10,000 queries in ≤ 1 s);
5. on Postgres, EXPLAIN of the hot queries after ANALYZE, to show the indexes in use (the
   whole-campaign history is a hash join over sequential scans when the campaign is the whole
   table, as it should be; the claim and transition look-ups must be index scans).

    .venv/bin/python bench/storage_bench.py [--candidates 10000] [--dim 32]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import sqlalchemy as sa

from storage import NewCandidate, Storage, upgrade
from storage.arrays import encode_array
from storage.models import Candidate, OracleQuery

PG_URL = os.environ.get("TILTLOOP_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _candidates(num: int, dim: int, seed: int) -> list[NewCandidate]:
    rng = np.random.default_rng(seed)
    designs = rng.normal(size=(num, dim)).astype(np.float32)
    return [NewCandidate(design=designs[i], log_weight=float(-i % 7), group=i // 16,
                         particle=i % 16, surrogate_mean=0.1, surrogate_std=0.2,
                         acquisition=float(i)) for i in range(num)]


def _row_by_row(storage: Storage, num: int, dim: int) -> float:
    """Rows/s for the naive way: one INSERT per candidate (ORM add + flush each)."""
    storage.record_round("bench", 99, alpha=0.1, candidates=_candidates(1, dim, 9))
    with storage.session() as session:
        round_id = session.scalar(sa.text("SELECT id FROM round WHERE round_index = 99"))
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for i in range(1, num + 1):
            blob, dtype, shape, digest = encode_array(rng.normal(size=dim).astype(np.float32))
            session.add(Candidate(round_id=round_id, candidate_index=i, design=blob,
                                  design_dtype=dtype, design_shape=shape, design_hash=digest,
                                  selected=False))
            session.flush()
        elapsed = time.perf_counter() - start
    return num / elapsed


def run_backend(label: str, url: str, num: int, dim: int) -> dict[str, float]:
    upgrade(url)
    figures: dict[str, float] = {}
    with Storage.open(url, actor="bench") as storage:
        storage.create_campaign("bench", {"bench": True})
        cands = _candidates(num, dim, 0)
        start = time.perf_counter()
        rec = storage.record_round("bench", 0, alpha=0.1, candidates=cands,
                                   selected=list(range(num)), oracle_name="lab")
        elapsed = time.perf_counter() - start
        figures["bulk rows/s"] = 2 * num / elapsed
        figures["record_round s"] = elapsed
        slice_n = min(1000, num)
        figures["row-by-row rows/s"] = _row_by_row(storage, slice_n, dim)
        sample = rec.query_keys[: min(300, num)]
        start = time.perf_counter()
        for key in sample:
            storage.transition_query(key, expected="pending", new="dispatched", job_id=f"j{key}")
        figures["transitions/s"] = len(sample) / (time.perf_counter() - start)
        with storage.session() as session:  # setup: every query has a result
            session.execute(sa.update(OracleQuery).values(
                status="succeeded", result_values={"y": 1.0, "cost": 2.0}, noise={"y": 0.1}))
            if storage.dialect == "postgresql":
                session.execute(sa.text("ANALYZE"))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            history = storage.load_history("bench")
            times.append(time.perf_counter() - start)
        assert len(history.completed) == num and history.X().shape == (num, dim)
        figures["load_history s"] = min(times)
        times = []
        for _ in range(3):  # what a status line needs: values only, design bytes left behind
            start = time.perf_counter()
            light = storage.load_history("bench", with_design=False)
            times.append(time.perf_counter() - start)
        assert len(light.completed) == num
        figures["history, no designs s"] = min(times)
        if storage.dialect == "postgresql":
            print(f"\n[{label}] EXPLAIN of the hot queries ({num} queries, after ANALYZE):")
            for name, plan in storage.hot_query_plans("bench").items():
                print(f"--- {name}\n{plan}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--postgres", default=PG_URL)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.make_url(args.postgres).set(drivername="postgresql").render_as_string(False)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        print(f"Postgres unavailable ({exc}); SQLite only")
    else:
        url = sa.make_url(args.postgres).set(drivername="postgresql+psycopg")
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            results["postgres"] = run_backend("postgres", url.render_as_string(False),
                                              args.candidates, args.dim)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = run_backend("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}",
                                        args.candidates, args.dim)
    n = args.candidates
    print(f"\n{n} candidates + {n} queries (design: {args.dim} float32), history of {n} queries")
    keys = list(next(iter(results.values())))
    print(f"{'':22}" + "".join(f"{b:>14}" for b in results))
    for key in keys:
        print(f"{key:22}" + "".join(f"{results[b][key]:>14.3f}" for b in results))
    for b, fig in results.items():
        print(f"{b}: bulk / row-by-row = {fig['bulk rows/s'] / fig['row-by-row rows/s']:.1f}x; "
              f"goal >= 5000 rows/s: {'met' if fig['bulk rows/s'] >= 5000 else 'MISSED'}; "
              f"history <= 1 s: {'met' if fig['load_history s'] <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
