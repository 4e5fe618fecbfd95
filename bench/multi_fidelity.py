"""Cheap evaluators: expensive queries to reach the single-fidelity run's best, side by side.

Problem: the bundled ``manifold`` prior (16-d designs near a curved 6-d manifold). The expensive
``[oracle]`` is the manifold oracle (``kind = "manifold"``: Hartmann6 in manifold coordinates
minus `25 · dist²`, noise-free); the cheap one (``[[oracles]]``, cost 0.05) is the same function
plus a smooth bias `0.3 sin(1.5 x₀) + 0.2 cos(x₁)` and Gaussian noise (std 0.05), a
``callable`` oracle (this module's :func:`cheap_value`).

For each seed, two whole campaigns run through the real loop (driver, SQLite, Ray workers,
exactly-once dispatch) with the same seed, budget and sampler, in alternating order:

* ``single``: ``[oracle]`` only;
* ``multi``: ``[oracle]`` plus the cheap oracle (``per_round`` cheap queries a round first).

Printed per seed: each run's best expensive value, the expensive queries the single run needed
to reach its own best, and the expensive queries the multi run needed to reach the single
run's best ("-" if it never did); the total cost (expensive queries + 0.05 × cheap queries);
wall and process CPU seconds of each run; the load average before and after.

Goal (printed PASS/FAIL, never asserted): on a majority of seeds the multi run reaches the
single run's best with fewer expensive queries than the single run needed.

``--constrained``: both oracles also report ``c = x₀`` (the cheap one ``c + 0.05``: slightly
pessimistic) and both campaigns carry ``[[constraints]] c <= 0`` (the expensive oracle is then a
``callable`` too, :func:`expensive_constrained`); "best" means best feasible, and each run's
feasible fraction of expensive queries is printed.

    PYTHONPATH=. .venv/bin/python bench/multi_fidelity.py                # 3 seeds
    PYTHONPATH=. .venv/bin/python bench/multi_fidelity.py --seeds 5 --total 32
    PYTHONPATH=. .venv/bin/python bench/multi_fidelity.py --constrained --seeds 2 --total 16
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/multi_fidelity.py`

CHEAP_COST = 0.05
_PROBLEM: Any = None


def cheap_value(design: np.ndarray) -> dict[str, float]:
    """The cheap oracle: the manifold value plus a smooth bias and seeded noise (std 0.05)."""
    global _PROBLEM
    import torch

    from oracles.simulated.manifold import ManifoldProblem

    if _PROBLEM is None:
        _PROBLEM = ManifoldProblem()
    x = np.asarray(design, dtype=np.float64).reshape(-1)
    value = float(_PROBLEM.value(torch.as_tensor(x, dtype=torch.float64).unsqueeze(0))[0])
    bias = 0.3 * np.sin(1.5 * x[0]) + 0.2 * np.cos(x[1])
    noise = np.random.default_rng(zlib.crc32(x.tobytes())).normal(0.0, 0.05)  # same design, same noise
    return {"value": value + float(bias) + float(noise)}


def expensive_constrained(design: np.ndarray) -> dict[str, float]:
    """The expensive oracle of ``--constrained``: the manifold value and ``c = x₀``."""
    global _PROBLEM
    import torch

    from oracles.simulated.manifold import ManifoldProblem

    if _PROBLEM is None:
        _PROBLEM = ManifoldProblem()
    x = np.asarray(design, dtype=np.float64).reshape(-1)
    value = float(_PROBLEM.value(torch.as_tensor(x, dtype=torch.float64).unsqueeze(0))[0])
    return {"value": value, "c": float(x[0])}


def cheap_constrained(design: np.ndarray) -> dict[str, float]:
    """The cheap oracle of ``--constrained``: :func:`cheap_value` and ``c = x₀ + 0.05``."""
    x = np.asarray(design, dtype=np.float64).reshape(-1)
    return {**cheap_value(design), "c": float(x[0]) + 0.05}


def config(name: str, seed: int, url: str, ray_address: str, args: argparse.Namespace,
           multi: bool) -> Any:
    from optimizer.campaign.config_io import parse_config

    data: dict[str, Any] = {
        "name": name, "seed": seed, "prior": {"name": "manifold", "device": "cpu"},
        "oracle": {"kind": "manifold", "objective": "value"},
        "objectives": [{"name": "value", "direction": "maximize"}],
        "feature_map": {"kind": "prior"},
        "surrogate": {"beta": 1.0, "acquisition": "qlognei"},
        "sampler": {"alpha": [0.5, 0.2, 0.1], "num_steps": args.num_steps},
        "workers": {"count": 2, "particles_per_worker": args.particles, "cpus_per_worker": 0.5},
        "budget": {"q": args.q, "max_in_flight": args.q, "total": args.total, "poll_interval_s": 0.05},
        "storage": {"url": url}, "ray": {"address": ray_address},
    }
    outputs = ["value", "c"] if args.constrained else ["value"]
    if args.constrained:
        data["oracle"] = {"kind": "callable", "target": "bench.multi_fidelity:expensive_constrained",
                          "objectives": outputs, "max_workers": 2}
        data["constraints"] = [{"name": "c", "op": "<=", "bound": 0.0}]
    if multi:
        target = "cheap_constrained" if args.constrained else "cheap_value"
        data["oracles"] = [{
            "name": "sim", "cost": CHEAP_COST, "per_round": args.per_round,
            "oracle": {"kind": "callable", "target": f"bench.multi_fidelity:{target}",
                       "objectives": outputs, "max_workers": 2}}]
    return parse_config(data, f"<bench {name}>")


def run_one(seed: int, multi: bool, folder: Path, ray_address: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    from optimizer.campaign.fidelity import child_name
    from optimizer.campaign.service import run_campaign
    from storage import Storage

    name = f"{'multi' if multi else 'single'}-{seed}"
    url = f"sqlite:///{folder / (name + '.db')}"
    cfg = config(name, seed, url, ray_address, args, multi)
    wall, cpu = time.perf_counter(), time.process_time()
    status = run_campaign(cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with Storage.open(url) as st:
        done = [q for q in st.load_history(name, with_design=False).completed if q.values]
        # the best counts feasible results only (all are feasible without --constrained)
        ok = [not args.constrained or float(q.values["c"]) <= 0.0 for q in done]  # type: ignore[index]
        values = [float(q.values["value"]) if f else -np.inf  # type: ignore[index]
                  for q, f in zip(done, ok, strict=True)]
        cheap = sum(st.query_counts(child_name(name, "sim")).values()) if multi else 0
    return {"name": name, "status": status.status, "values": values, "cheap": cheap,
            "wall_s": wall, "cpu_s": cpu, "feasible": sum(ok) / max(len(ok), 1)}


def queries_to_reach(values: list[float], target: float) -> int | None:
    """1-based index of the first value ≥ ``target`` (None: never)."""
    for i, v in enumerate(values):
        if v >= target - 1e-12:
            return i + 1
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--q", type=int, default=4, help="expensive queries per round")
    p.add_argument("--total", type=int, default=24, help="expensive queries in all")
    p.add_argument("--per-round", type=int, default=12, help="cheap queries per round")
    p.add_argument("--particles", type=int, default=64, help="particles per worker (2 workers)")
    p.add_argument("--num-steps", type=int, default=20, help="DAS steps")
    p.add_argument("--constrained", action="store_true",
                   help="both oracles report c = x0; [[constraints]] c <= 0 in both campaigns")
    args = p.parse_args(argv)
    os.environ.setdefault("TILTLOOP_ALLOW_CALLABLES", "bench.multi_fidelity")
    import ray

    load0 = os.getloadavg()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    address = ray.get_runtime_context().gcs_address
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.seeds):
                order = (False, True) if seed % 2 == 0 else (True, False)  # interleaved
                runs = {m: run_one(seed, m, Path(tmp), address, args) for m in order}
                rows.append((seed, runs[False], runs[True]))
                print_row(seed, runs[False], runs[True], args, flush=True)
    finally:
        ray.shutdown()
    load1 = os.getloadavg()
    print(f"\nload average before {load0[0]:.2f} / after {load1[0]:.2f} (1 min), "
          f"{os.cpu_count()} CPUs; CPU s = this process (driver, fits, screening; the Ray "
          "workers' SMC is not counted)")
    wins = 0
    for _seed, single, multi in rows:
        best = max(single["values"])
        need_single = queries_to_reach(single["values"], best)
        need_multi = queries_to_reach(multi["values"], best)
        wins += need_multi is not None and need_single is not None and need_multi < need_single
    verdict = "PASS" if wins * 2 > len(rows) else "FAIL"
    print(f"goal: multi reaches the single run's best with fewer expensive queries on a majority "
          f"of seeds: {wins}/{len(rows)} {verdict}")
    return 0


def print_row(seed: int, single: dict[str, Any], multi: dict[str, Any], args: argparse.Namespace,
              flush: bool = False) -> None:
    if seed == 0:
        print(f"{'seed':>4} | {'single best':>11} {'n to best':>9} {'cost':>6} {'wall s':>7} "
              f"{'CPU s':>6} {'feas':>5} | {'multi best':>10} {'n to single best':>16} "
              f"{'cheap q':>7} {'cost':>6} {'wall s':>7} {'CPU s':>6} {'feas':>5}")
    best = max(single["values"])
    need_single = queries_to_reach(single["values"], best)
    need_multi = queries_to_reach(multi["values"], best)
    cost_multi = len(multi["values"]) + CHEAP_COST * multi["cheap"]
    print(f"{seed:>4} | {best:>11.4f} {need_single!s:>9} {len(single['values']):>6.1f} "
          f"{single['wall_s']:>7.1f} {single['cpu_s']:>6.1f} {single['feasible']:>5.2f} | "
          f"{max(multi['values']):>10.4f} {'-' if need_multi is None else need_multi:>16} "
          f"{multi['cheap']:>7} {cost_multi:>6.1f} {multi['wall_s']:>7.1f} {multi['cpu_s']:>6.1f} "
          f"{multi['feasible']:>5.2f}", flush=flush)


if __name__ == "__main__":
    sys.exit(main())
