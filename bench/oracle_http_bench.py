"""Throughput and CPU overhead of the HTTP oracle client against the lab simulator.

The simulator runs in its own process at zero latency (so its CPU is not counted); the client
submits queries in waves of ``in_flight`` (one POST each, concurrently) and polls them to
completion (one GET each). Printed per level of concurrency, measured side by side in one run:

- queries/s: completed queries per wall-clock second;
- client CPU ms/query: this process's CPU time (user + system, all threads) per query;
- CPU share: client CPU time / wall time, i.e. the fraction of one core the client needs at that
  rate (well under 1 means the client is never the bottleneck of a campaign).

    .venv/bin/python bench/oracle_http_bench.py --queries 1024 --in-flight 1 16 64
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oracles.http import HttpOracle, RetryPolicy  # noqa: E402
from oracles.labsim import LabSimulatorProcess  # noqa: E402
from oracles.protocol import QueryRequest  # noqa: E402


def run_level(url: str, queries: int, in_flight: int, tag: str) -> dict[str, float]:
    """Send ``queries`` queries in waves of ``in_flight``; return the figures."""
    rng = np.random.default_rng(0)
    designs = rng.random((queries, 2))
    client = HttpOracle(url, objectives=("y",), max_concurrency=in_flight, timeout_s=30.0,
                        retry=RetryPolicy(backoff_base_s=0.05))
    client.poll(client.submit([QueryRequest(f"{tag}-warmup", designs[0])]))  # open connections
    done = failed = polls = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, queries, in_flight):
        wave = [QueryRequest(f"{tag}-{i}", designs[i]) for i in range(start, min(queries, start + in_flight))]
        handles = client.submit(wave)
        pending = handles
        while pending:
            results = client.poll(pending)
            polls += len(pending)
            pending = [h for h, r in zip(pending, results) if not r.done]
            done += sum(r.status == "succeeded" for r in results if r.done)
            failed += sum(r.status != "succeeded" for r in results if r.done)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    client.close()
    return {"in_flight": in_flight, "queries": queries, "succeeded": done, "failed": failed,
            "requests_per_query": (queries + polls) / queries, "queries_per_s": queries / wall,
            "cpu_ms_per_query": 1000 * cpu / queries, "cpu_share": cpu / wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--url", default=None, help="an already running simulator (else one is started)")
    args = parser.parse_args()
    lab = None if args.url else LabSimulatorProcess(["--function", "branin", "--latency", "0"])
    url = args.url or lab.url
    print(f"lab simulator at {url} (separate process, zero latency); {args.queries} queries per level")
    print(f"{'in flight':>9} {'queries/s':>10} {'client CPU ms/query':>20} {'CPU share':>10} "
          f"{'req/query':>10} {'ok':>6} {'failed':>6}")
    try:
        for level in args.in_flight:
            r = run_level(url, args.queries, level, tag=f"L{level}-{time.time_ns()}")
            print(f"{r['in_flight']:>9d} {r['queries_per_s']:>10.0f} {r['cpu_ms_per_query']:>20.3f} "
                  f"{r['cpu_share']:>10.2f} {r['requests_per_query']:>10.2f} {r['succeeded']:>6d} "
                  f"{r['failed']:>6d}")
    finally:
        if lab is not None:
            lab.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
