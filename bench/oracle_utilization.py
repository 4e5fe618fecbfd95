"""Oracle utilization: the fraction of time the lab has its allowed queries in flight, with the
synchronous loop and with the asynchronous pipeline (``[pipeline] mode``), side by side.

    .venv/bin/python bench/oracle_utilization.py                     # 5-s lab, q 8, 16 in flight, 96
    .venv/bin/python bench/oracle_utilization.py --repeats 2 --latency 5 --total 96

Each run is a whole campaign on the bundled manifold prior (the demo's config: 2 workers x 128
particles, 40 steps) against the lab simulator over HTTP with a fixed latency, in a fresh SQLite
database; the modes alternate (sync, async, async, sync, ...), one local Ray for all.

Utilization is read back from the database: each query occupies one of the lab's
``max_in_flight`` slots from ``dispatched_at`` until its result is stored (``finished_at``);
utilization = ∫ min(in_flight(t), limit) dt / (limit · T) over T = [first dispatch, last
dispatch] (after the last dispatch the budget is spent and the lab necessarily drains). Idle
gaps: the intervals in T with fewer than ``limit`` queries in flight, the longest printed.
Process CPU seconds of this process (the driver; Ray workers are separate processes) and the
load average are printed next to wall time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import run_campaign
from oracles.labsim import LabSimulator
from oracles.simulated.manifold import ManifoldOracle
from storage import Storage


def _unix(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def utilization(intervals: list[tuple[float, float]], limit: int) -> tuple[float, list[float]]:
    """``(utilization, idle gaps)`` of the ``(start, end)`` query intervals (see the docstring)."""
    t0, t1 = min(a for a, _ in intervals), max(a for a, _ in intervals)
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    busy, gaps, gap = 0.0, [], 0.0
    level, last = 0, t0
    for t, step in events:
        lo, hi = max(last, t0), min(t, t1)
        if hi > lo:  # the segment [lo, hi] at `level` queries in flight
            busy += min(level, limit) * (hi - lo)
            if level < limit:
                gap += hi - lo
            elif gap:
                gaps.append(gap)
                gap = 0.0
        level += step
        last = max(last, t)
    if gap:
        gaps.append(gap)
    span = t1 - t0
    return (busy / (limit * span) if span > 0 else 1.0), sorted(gaps, reverse=True)


def run_once(mode: str, args: argparse.Namespace, workdir: Path, tag: str) -> dict[str, Any]:
    oracle = ManifoldOracle(noise_std=0.05, seed=0, latency_s=args.latency)
    url = f"sqlite:///{workdir / f'{tag}.db'}"
    with LabSimulator(oracle).start() as lab:
        cfg = parse_config({
            "name": tag, "seed": 0, "prior": {"name": "manifold"},
            "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 30.0},
            "objectives": [{"name": "value"}],
            "sampler": {"alpha": [0.5, 0.2, 0.1], "num_steps": args.steps},
            "workers": {"count": 2, "particles_per_worker": args.particles // 2},
            "budget": {"q": args.q, "max_in_flight": args.max_in_flight, "total": args.total,
                       "poll_interval_s": args.poll},
            "pipeline": {"mode": mode},
            "storage": {"url": url},
        }, f"bench config {tag}")
        wall, cpu = time.perf_counter(), time.process_time()
        t_start = time.monotonic()

        def say(line: str) -> None:
            if args.verbose:
                print(f"  [{mode} {time.monotonic() - t_start:7.2f} s] {line}", flush=True)

        status = run_campaign(cfg, progress=say)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with Storage.open(url) as st:
        hist = st.load_history(tag, with_design=False)
        rounds = st.list_rounds(tag)
    done = [*hist.completed, *hist.failed]
    intervals = [(_unix(q.dispatched_at), _unix(q.finished_at)) for q in done
                 if q.dispatched_at is not None and q.finished_at is not None]
    util, gaps = utilization(intervals, args.max_in_flight)
    return {"mode": mode, "util": util, "gaps": gaps, "wall": wall, "cpu": cpu,
            "results": status.results, "best": status.best, "rounds": len(rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=5.0, help="lab seconds per query")
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--max-in-flight", type=int, default=16)
    ap.add_argument("--total", type=int, default=96)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--particles", type=int, default=256, help="per round, over 2 workers")
    ap.add_argument("--poll", type=float, default=0.1, help="budget.poll_interval_s")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--verbose", action="store_true", help="print the drivers' progress lines")
    args = ap.parse_args()
    modes = args.modes.split(",")
    print(f"# oracle utilization: lab latency {args.latency:g} s, q {args.q}, max_in_flight "
          f"{args.max_in_flight}, {args.total} queries, manifold prior, {args.particles} particles "
          f"x {args.steps} steps; load before {os.getloadavg()[0]:.2f}")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = modes if rep % 2 == 0 else modes[::-1]
            for mode in order:
                r = run_once(mode, args, Path(tmp), f"util-{mode}-{rep}")
                runs.append(r)
                gaps = ", ".join(f"{g:.2f}" for g in r["gaps"][:5])
                print(f"{mode:>5} rep {rep}: utilization {r['util']:.3f}; idle gaps {len(r['gaps'])}, "
                      f"longest [{gaps}] s; {r['rounds']} rounds, best {r['best']:.4g}; wall "
                      f"{r['wall']:.1f} s, driver CPU {r['cpu']:.1f} s; load {os.getloadavg()[0]:.2f}",
                      flush=True)
    print("\n| mode | utilization (median) | runs | idle gaps (median count) | wall s (median) |")
    print("|---|---|---|---|---|")
    med = {}
    for mode in modes:
        rs = [r for r in runs if r["mode"] == mode]
        med[mode] = statistics.median(r["util"] for r in rs)
        each = ", ".join(f"{r['util']:.3f}" for r in rs)
        print(f"| {mode} | {med[mode]:.3f} | {each} | "
              f"{statistics.median(len(r['gaps']) for r in rs):.0f} | "
              f"{statistics.median(r['wall'] for r in rs):.1f} |")
    if "sync" in med and "async" in med:
        verdict = "PASS" if med["async"] >= 0.95 else "FAIL"
        print(f"\nasync / sync utilization: {med['async'] / med['sync']:.2f}x; goal async >= 0.95: "
              f"{verdict}; load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
