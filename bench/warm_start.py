"""Warm start vs cold start on the manifold problem: queries needed to reach a source campaign's best.

For each seed: a source campaign (``--source-queries`` queries) runs first; then, interleaved, a
cold campaign and a warm one (``[history] import_from = [source]``) with the same budget and seed.
Printed per seed and as a median: the queries each needed until its best reached the source's best
(``>N`` when it never did), its final best, wall seconds and the driver process's CPU seconds (the
SMC workers are Ray processes of their own), and the machine load.

    .venv/bin/python bench/warm_start.py                 # 3 seeds, ~5 minutes on 2 cores
    .venv/bin/python bench/warm_start.py --seeds 1 --queries 16   # a quick look
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import run_campaign
from storage import Storage


def _config(name: str, seed: int, url: str, total: int, q: int,
            import_from: list[str] | None = None) -> Any:
    return parse_config({
        "name": name, "seed": seed, "prior": {"name": "manifold"},
        "oracle": {"kind": "manifold", "noise_std": 0.05, "seed": seed},
        "objectives": [{"name": "value"}],
        "sampler": {"alpha": [0.5, 0.2, 0.1], "num_steps": 30},
        "workers": {"count": 2, "particles_per_worker": 128},
        "budget": {"q": q, "max_in_flight": q, "total": total, "poll_interval_s": 0.05},
        "history": {"import_from": import_from or []},
        "storage": {"url": url},
    }, f"<bench {name}>")


def _queries_to_reach(url: str, name: str, target: float) -> tuple[int | None, float]:
    """(1-based index of the first query whose running best reaches ``target`` or None, best)."""
    with Storage.open(url) as st:
        done = sorted(st.list_queries(name, statuses=("succeeded",)),
                      key=lambda q: (q.finished_at, q.key))
    best, hit = float("-inf"), None
    for i, q in enumerate(done, start=1):
        best = max(best, float(q.values["value"]))
        if hit is None and best >= target:
            hit = i
    return hit, best


def _run(config: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    run_campaign(config)
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--source-queries", type=int, default=32)
    ap.add_argument("--queries", type=int, default=32, help="budget of the cold and warm campaigns")
    ap.add_argument("--q", type=int, default=8)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'warm.db'}"
        for seed in range(args.seeds):
            src = f"source-{seed}"
            _run(_config(src, 1000 + seed, url, args.source_queries, args.q))
            _, target = _queries_to_reach(url, src, float("inf"))
            out: dict[str, Any] = {"seed": seed, "target": target}
            order = ("cold", "warm") if seed % 2 == 0 else ("warm", "cold")  # interleaved
            for kind in order:
                name = f"{kind}-{seed}"
                cfg = _config(name, seed, url, args.queries, args.q,
                              import_from=[src] if kind == "warm" else None)
                wall, cpu = _run(cfg)
                hit, best = _queries_to_reach(url, name, target)
                out[kind] = {"hit": hit, "best": best, "wall": wall, "cpu": cpu}
            rows.append(out)
            print(f"seed {seed}: source best {target:.4f} | cold: "
                  f"{_fmt(out['cold']['hit'], args.queries)} queries to reach it, best "
                  f"{out['cold']['best']:.4f} ({out['cold']['wall']:.0f} s wall, "
                  f"{out['cold']['cpu']:.0f} s driver CPU) | warm: {_fmt(out['warm']['hit'], args.queries)} "
                  f"queries, best {out['warm']['best']:.4f} ({out['warm']['wall']:.0f} s wall, "
                  f"{out['warm']['cpu']:.0f} s driver CPU)", flush=True)
    ray.shutdown()
    never = args.queries + 1  # "not reached" ranks after every budget-limited hit
    cold = [r["cold"]["hit"] or never for r in rows]
    warm = [r["warm"]["hit"] or never for r in rows]
    print(f"\nmedian queries to reach the source's best (>{args.queries} = never): cold "
          f"{statistics.median(cold):g}, warm {statistics.median(warm):g}; warm needed fewer in "
          f"{sum(w < c for w, c in zip(warm, cold))} of {len(rows)} seeds")
    print(f"median final best: cold {statistics.median(r['cold']['best'] for r in rows):.4f}, "
          f"warm {statistics.median(r['warm']['best'] for r in rows):.4f} (optimum 3.32237)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def _fmt(hit: int | None, budget: int) -> str:
    return str(hit) if hit is not None else f">{budget}"


if __name__ == "__main__":
    main()
