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

What the lab waited on: the idle slot-seconds `(1 − utilization) · limit · T`, split into the
time a batch was not ready when slots were free (read from the rounds' ``timings``: async,
``wait_population_s`` — no pool with unused candidates —, ``wait_selection_s`` — a selection
still running —, ``wait_rescore_s`` — a batch held by the ``rescore`` policy; sync, the round's
fit / SMC / screening) times the batch size, and the rest (poll interval, recording results and
the round, sending: the driver's own pass).

Quality: repeat r runs both modes with campaign seed r and lab noise seed r; the best true
(noise-free) value among the queried designs is printed per run and as mean ± s.e. per mode,
and the paired difference async − sync ± s.e., so a faster oracle is never bought with worse
designs unseen.

Staleness, per sent batch (``selection/population``): the results finished when it went out
(its first dispatch) minus those its selection's history held (``summary.observations``), and
minus those finished when its population's generation started (``summary.population.generated``;
the sync loop's own round: 0 up to the results arriving during its generation); with the
batch's best true value, how many populations and selections the campaign used and generated
(the pipeline's progress lines and DEBUG log) and their durations.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import run_campaign
from oracles.labsim import LabSimulator
from oracles.simulated.manifold import ManifoldOracle
from storage import Storage


def _unix(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)).timestamp()


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


def run_once(mode: str, args: argparse.Namespace, workdir: Path, tag: str, seed: int) -> dict[str, Any]:
    oracle = ManifoldOracle(noise_std=0.05, seed=seed, latency_s=args.latency)
    url = f"sqlite:///{workdir / f'{tag}.db'}"
    with LabSimulator(oracle).start() as lab:
        cfg = parse_config({
            "name": tag, "seed": seed, "prior": {"name": "manifold"},
            "oracle": {"kind": "http", "base_url": lab.url, "timeout_s": 30.0},
            "objectives": [{"name": "value"}],
            "sampler": {"alpha": [0.5, 0.2, 0.1], "num_steps": args.steps},
            "workers": {"count": 2, "particles_per_worker": args.particles // 2},
            "budget": {"q": args.q, "max_in_flight": args.max_in_flight, "total": args.total,
                       "poll_interval_s": args.poll},
            "pipeline": {"mode": mode, "rescore": args.rescore},
            "storage": {"url": url},
        }, f"bench config {tag}")
        wall, cpu = time.perf_counter(), time.process_time()
        t_start = time.monotonic()
        counts = _Counts()
        pipe_log = logging.getLogger("optimizer.campaign.pipeline")
        pipe_log.addHandler(counts)
        level = pipe_log.level
        pipe_log.setLevel(logging.DEBUG)

        def say(line: str) -> None:
            if line.startswith("pipeline: population"):
                counts.counts["populations"] += 1
            if args.verbose:
                print(f"  [{mode} {time.monotonic() - t_start:7.2f} s] {line}", flush=True)

        try:
            status = run_campaign(cfg, progress=say)
        finally:
            pipe_log.removeHandler(counts)
            pipe_log.setLevel(level)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with Storage.open(url) as st:
        hist = st.load_history(tag, with_design=True)
        rounds = st.list_rounds(tag)
    done = [*hist.completed, *hist.failed]
    intervals = [(_unix(q.dispatched_at), _unix(q.finished_at)) for q in done
                 if q.dispatched_at is not None and q.finished_at is not None]
    util, gaps = utilization(intervals, args.max_in_flight)
    designs = torch.as_tensor(np.stack([np.asarray(q.design, dtype=np.float64) for q in done]))
    true_best = float(oracle.problem.value(designs).max())
    span = max(a for a, _ in intervals) - min(a for a, _ in intervals)
    idle = (1.0 - util) * args.max_in_flight * span  # idle slot-seconds
    waits: dict[str, float] = {}
    for r in rounds:
        t, n = r.timings or {}, len(r.selected) or args.q
        keys = ("wait_population_s", "wait_selection_s", "wait_rescore_s") if mode == "async" else (
            "fit_s", "smc_s", "screen_s")
        if r.index == 0:
            continue  # before the first dispatch: outside the measured span
        for k in keys:
            waits[k] = waits.get(k, 0.0) + n * float(t.get(k, 0.0))
        kind = ((r.summary or {}).get("population") or {}).get("rescore")
        if kind:
            waits[f"n_{kind}"] = waits.get(f"n_{kind}", 0.0) + 1
        waits["tilted"] = waits.get("tilted", 0.0) + bool((r.summary or {}).get("tilted"))
    values = oracle.problem.value(designs).numpy().reshape(-1)
    true_of = {q.key: float(v) for q, v in zip(done, values, strict=True)}
    return {"mode": mode, "util": util, "gaps": gaps, "wall": wall, "cpu": cpu,
            "results": status.results, "best": status.best, "rounds": len(rounds),
            "true_best": true_best, "idle": idle, "waits": waits,
            "stale": staleness(done, rounds, true_of), "counts": dict(counts.counts)}


class _Counts(logging.Handler):
    """Counts the pipeline's populations and its selections, kept or dropped (its DEBUG lines)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts = {"populations": 0, "kept": 0, "dropped": 0}

    def emit(self, record: logging.LogRecord) -> None:
        msg = str(record.msg)
        if "selection (" in msg:
            self.counts["dropped" if "dropped" in msg else "kept"] += 1


def staleness(done: list[Any], rounds: list[Any], true_of: dict[str, float]) -> dict[str, Any]:
    """Per sent batch: results finished when it went out (its first dispatch) minus those its
    selection's history held (``summary.observations``: the *selection* staleness) and minus
    those finished when its population's generation started (``summary.population.generated``;
    the sync loop generates each round's own: the *population* staleness); the batch's best true
    value; how many populations and selections the campaign made and how long they took."""
    finished = np.sort([_unix(q.finished_at) for q in done if q.finished_at is not None])
    by_round: dict[int, list[Any]] = {}
    for q in done:
        by_round.setdefault(q.round_index, []).append(q)
    rows = []
    pops: dict[tuple[float, ...], float] = {}
    sels: dict[tuple[float, ...], float] = {}
    for r in rounds:
        qs = [q for q in by_round.get(r.index, []) if q.dispatched_at is not None]
        if not qs:
            continue
        sent = min(_unix(q.dispatched_at) for q in qs)
        at_send = int(np.searchsorted(finished, sent, side="right"))
        summ = r.summary or {}
        pop = summ.get("population") or {}
        gen = tuple(pop.get("generated") or ())
        if gen:
            pops[gen] = gen[1] - gen[0]
            at_gen = int(np.searchsorted(finished, gen[0], side="right"))
        else:  # the sync loop: this round's own population, fitted on what its selection saw
            at_gen = int(summ.get("observations", 0))
            t = r.timings or {}
            pops[(r.index,)] = float(t.get("fit_s", 0.0) + t.get("smc_s", 0.0))
        sel = tuple(pop.get("selection") or ())
        if sel:
            sels[sel] = sel[1] - sel[0]
        rows.append({"index": r.index, "sel": at_send - int(summ.get("observations", 0)),
                     "pop": at_send - at_gen, "tilted": bool(summ.get("tilted")),
                     "at_send": at_send, "best": max(true_of[q.key] for q in qs),
                     "after": pop.get("after"), "kind": pop.get("rescore")})
    return {"rows": rows, "populations": len(pops), "selections": len(sels) or len(rows),
            "gen_s": sorted(pops.values()), "sel_s": sorted(sels.values())}


def _stale_line(r: dict[str, Any]) -> str:
    s = r["stale"]
    rows = s["rows"]
    plain = sum(1 for x in rows if not x["tilted"])
    tilted = [x for x in rows if x["tilted"]]

    def med(v: list[float]) -> float:
        return statistics.median(v) if v else float("nan")

    per = " ".join(f"{x['sel']}/{x['pop']}" for x in rows)
    c = r["counts"]
    made = (f"; the pipeline generated {c['populations']} populations, kept {c['kept']} selections, "
            f"dropped {c['dropped']}" if r["mode"] == "async" else "")
    return (f"    {len(rows)} batches ({plain} plain prior), {s['populations']} populations "
            f"(generation median {med(s['gen_s']):.1f} s), {s['selections']} selections "
            f"(median {med(s['sel_s']):.2f} s) used{made}; tilted batches' staleness in results, selection "
            f"median {med([x['sel'] for x in tilted]):.0f} max {max([x['sel'] for x in tilted], default=0)}, "
            f"population median {med([x['pop'] for x in tilted]):.0f} max "
            f"{max([x['pop'] for x in tilted], default=0)}\n    per batch (selection/population "
            f"staleness): {per}\n    per batch best true value: "
            + " ".join(f"{x['best']:.2f}" for x in rows))


def _breakdown(r: dict[str, Any]) -> str:
    w = r["waits"]
    if r["mode"] == "async":
        batch = w.get("wait_population_s", 0.0) + w.get("wait_selection_s", 0.0) + w.get(
            "wait_rescore_s", 0.0)
        parts = (f"population {w.get('wait_population_s', 0.0):.1f}, selection "
                 f"{w.get('wait_selection_s', 0.0):.1f}, rescore policy {w.get('wait_rescore_s', 0.0):.1f}")
        kinds = ", ".join(f"{k[2:]} {int(v)}" for k, v in sorted(w.items()) if k.startswith("n_"))
        tail = f"; batches screened by: {kinds or '-'}"
    else:
        batch = w.get("fit_s", 0.0) + w.get("smc_s", 0.0) + w.get("screen_s", 0.0)
        parts = (f"fit {w.get('fit_s', 0.0):.1f}, SMC {w.get('smc_s', 0.0):.1f}, screening "
                 f"{w.get('screen_s', 0.0):.1f}")
        tail = ""
    tail += f"; batches from a tilted population {int(w.get('tilted', 0))} of {r['rounds'] - 1}"
    return (f"    idle slot-s {r['idle']:.1f}: no batch ready {min(batch, r['idle']):.1f} ({parts}), "
            f"driver pass (poll, record, send) {max(0.0, r['idle'] - batch):.1f}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=5.0, help="lab seconds per query")
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--max-in-flight", type=int, default=16)
    ap.add_argument("--total", type=int, default=96)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--particles", type=int, default=256, help="per round, over 2 workers")
    ap.add_argument("--poll", type=float, default=0.1, help="budget.poll_interval_s")
    ap.add_argument("--repeats", type=int, default=1, help="repeat r: campaign and lab seed --seed + r")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rescore", default="auto", choices=("auto", "always", "never"),
                    help="[pipeline] rescore of the async runs")
    ap.add_argument("--modes", default="sync,async")
    ap.add_argument("--verbose", action="store_true", help="print the drivers' progress lines")
    ap.add_argument("--debug", action="store_true", help="log the pipeline's selections (DEBUG)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if args.debug:
        logging.basicConfig(format="  %(asctime)s %(message)s")
        logging.getLogger("optimizer.campaign.pipeline").setLevel(logging.DEBUG)
    print(f"# oracle utilization: lab latency {args.latency:g} s, q {args.q}, max_in_flight "
          f"{args.max_in_flight}, {args.total} queries, manifold prior, {args.particles} particles "
          f"x {args.steps} steps; load before {os.getloadavg()[0]:.2f}")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = modes if rep % 2 == 0 else modes[::-1]
            for mode in order:
                r = run_once(mode, args, Path(tmp), f"util-{mode}-{rep}", seed=args.seed + rep)
                runs.append(r)
                gaps = ", ".join(f"{g:.2f}" for g in r["gaps"][:5])
                print(f"{mode:>5} rep {rep}: utilization {r['util']:.3f}; idle gaps {len(r['gaps'])}, "
                      f"longest [{gaps}] s; {r['rounds']} rounds, best observed {r['best']:.4g}, "
                      f"true {r['true_best']:.4g}; wall {r['wall']:.1f} s, driver CPU {r['cpu']:.1f} s; "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
                print(_breakdown(r), flush=True)
                print(_stale_line(r), flush=True)
    print("\n| mode | utilization (median) | runs | idle gaps (median count) | wall s (median) "
          "| staleness sel./pop. (median) | best true value (mean ± s.e.) |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for mode in modes:
        rs = [r for r in runs if r["mode"] == mode]
        med[mode] = statistics.median(r["util"] for r in rs)
        each = ", ".join(f"{r['util']:.3f}" for r in rs)
        best = [r["true_best"] for r in rs]
        se = statistics.stdev(best) / len(best) ** 0.5 if len(best) > 1 else float("nan")
        print(f"| {mode} | {med[mode]:.3f} | {each} | "
              f"{statistics.median(len(r['gaps']) for r in rs):.0f} | "
              f"{statistics.median(r['wall'] for r in rs):.1f} | {_stale_median(rs, 'sel'):.0f} / "
              f"{_stale_median(rs, 'pop'):.0f} | {statistics.mean(best):.3f} ± {se:.3f} |")
    if "sync" in med and "async" in med and args.repeats > 1:
        diff = [a["true_best"] - s["true_best"] for a, s in zip(
            [r for r in runs if r["mode"] == "async"], [r for r in runs if r["mode"] == "sync"],
            strict=True)]
        se = statistics.stdev(diff) / len(diff) ** 0.5
        print(f"\nbest true value, async − sync, paired by seed: {statistics.mean(diff):+.3f} ± {se:.3f} "
              f"(n = {len(diff)}; optimum {ManifoldOracle().problem.optimal_value:.3f})")
    if "sync" in med and "async" in med:
        verdict = "PASS" if med["async"] >= 0.95 else "FAIL"
        print(f"\nasync / sync utilization: {med['async'] / med['sync']:.2f}x; goal async >= 0.95: "
              f"{verdict}")
    print(f"load after {os.getloadavg()[0]:.2f}; this process's CPU {time.process_time():.1f} s")


def _stale_median(rs: list[dict[str, Any]], key: str) -> float:
    """The median staleness (results) of the tilted batches of the runs ``rs``."""
    v = [x[key] for r in rs for x in r["stale"]["rows"] if x["tilted"]]
    return statistics.median(v) if v else float("nan")


if __name__ == "__main__":
    main()
