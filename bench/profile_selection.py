"""Where an asynchronous selection's time goes: one async campaign of ``oracle_utilization``'s
setting (5-s lab over HTTP, q 8, 16 in flight) with every background selection
(``AsyncRounds._select``) under cProfile, timed in its thread's CPU time.

    .venv/bin/python bench/profile_selection.py --total 64 --top 30

Prints each selection's wall and thread-CPU seconds and the cumulative profile of all of them;
load average and this process's CPU time before and after.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from optimizer.campaign import pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total", type=int, default=64)
    ap.add_argument("--latency", type=float, default=5.0)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="cumulative")
    ap.add_argument("--rescore", default="auto", choices=("auto", "always", "never"))
    ap.add_argument("--dump", default=None, help="write the pstats file here too")
    ap.add_argument("--skip-refits", action="store_true",
                    help="profile only selections that did not fit hyperparameters")
    args = ap.parse_args()
    profs: list[cProfile.Profile] = []
    each: list[tuple[float, float, int, int]] = []
    inner = pipeline.AsyncRounds._select

    def profiled(*a, **k):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), time.thread_time()
        one = cProfile.Profile(timer=time.thread_time)
        one.enable()
        try:
            out = inner(*a, **k)
        finally:
            one.disable()
        if not (args.skip_refits and out.rescored is not None and out.rescored.kind == "refit"):
            profs.append(one)
        n = len(out.batches)
        each.append((time.perf_counter() - w, time.thread_time() - c, n, int(a[3].sum())))
        return out

    pipeline.AsyncRounds._select = staticmethod(profiled)  # type: ignore[assignment]
    from bench.oracle_utilization import run_once  # noqa: E402  (after the patch: same module)

    ns = argparse.Namespace(latency=args.latency, q=8, max_in_flight=16, total=args.total, steps=40,
                            particles=256, poll=0.1, rescore=args.rescore, verbose=False)
    print(f"# load before {os.getloadavg()}; CPU {time.process_time():.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        r = run_once("async", ns, Path(tmp), "prof", seed=0)
    print(f"utilization {r['util']:.3f}, true best {r['true_best']:.3f}, wall {r['wall']:.1f} s")
    for w, c, n, avail in each:
        print(f"  selection: wall {w:.3f} s, thread CPU {c:.3f} s, {n} batches, {avail} available")
    ws = sorted(w for w, *_ in each)
    cs = sorted(c for _, c, *_ in each)
    if ws:
        print(f"selections {len(ws)}: wall median {ws[len(ws) // 2]:.3f} s, "
              f"CPU median {cs[len(cs) // 2]:.3f} s")
    if profs:
        stats = pstats.Stats(profs[0])
        for p in profs[1:]:
            stats.add(p)
        if args.dump:
            stats.dump_stats(args.dump)
        stats.sort_stats(args.sort).print_stats(args.top)
    print(f"# load after {os.getloadavg()}; this process's CPU {time.process_time():.1f} s")


if __name__ == "__main__":
    main()
