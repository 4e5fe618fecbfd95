"""Round 0 of a Pareto campaign: the hypervolume of the first ``q`` queries by how they are picked.

Before any result, a round picks ``q`` of ``--particles`` plain-prior samples. Compared, on the
problems of ``bench/multi_objective.py`` (same fixed reference point), over ``--seeds`` seeds:

* ``random`` — ``q`` fresh prior samples (the ``random`` method of that bench);
* ``maximin`` — greedy farthest-point in standardized feature space (``spacefill.maximin_select``,
  the single-objective round 0): takes the sample's extremes;
* ``maximin-inner`` — maximin among the half of the sample nearest its mean;
* ``typical`` — k-means medoids (``spacefill.typical_select``, a Pareto campaign's round 0).

Printed per problem and pick: mean ± s.e. of the hypervolume and the fraction of seeds at zero,
the mean standardized radius of the picks next to the sample's median (how extreme they are);
then process CPU time and load.

    .venv/bin/python bench/round0_picks.py                       # both problems, 20 seeds
    .venv/bin/python bench/round0_picks.py --problems manifold-mo --seeds 5
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/round0_picks.py`

from bench.campaign_methods import MethodSettings, RandomPrior  # noqa: E402
from bench.multi_objective import PROBLEMS, load_mo_problem  # noqa: E402
from optimizer.campaign.spacefill import maximin_select, typical_select  # noqa: E402
from optimizer.surrogate.pareto import hypervolume  # noqa: E402
from optimizer.workers.components import PriorBundle  # noqa: E402

PICKS = ("random", "maximin", "maximin-inner", "typical")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--q", type=int, default=4)
    ap.add_argument("--particles", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="prior sampling steps")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    c0, q = time.process_time(), args.q
    print(f"round-0 picks: {args.seeds} seeds, q={q} of {args.particles} prior particles, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    settings = MethodSettings(num_particles=args.particles, num_steps=args.steps)
    for name in [p for p in args.problems.split(",") if p]:
        p = load_mo_problem(name)
        bundle = PriorBundle(p.base.name, p.base.prior, p.base.feature_map)
        hv: dict[str, list[float]] = {k: [] for k in PICKS}
        radius: dict[str, list[float]] = {k: [] for k in PICKS if k != "random"}
        median = []
        for seed in range(args.seeds):
            m = RandomPrior(p.base, q, seed, settings)
            parts = m._prior_particles(0, args.particles)
            F = bundle.features_np(parts.numpy())
            V = p.base.value(parts).numpy()
            r = np.linalg.norm((F - F.mean(0)) / np.where(F.std(0) > 0, F.std(0), 1.0), axis=1)
            inner = np.flatnonzero(r <= np.median(r))
            picks = {"maximin": maximin_select(F, q, seed=seed),
                     "maximin-inner": inner[maximin_select(F[inner], q, seed=seed)],
                     "typical": typical_select(F, q, seed=seed)}
            hv["random"].append(hypervolume(p.base.value(m._prior_particles(0, q)).numpy(),
                                            p.reference))
            for k, idx in picks.items():
                hv[k].append(hypervolume(V[idx], p.reference))
                radius[k].append(float(r[idx].mean()))
            median.append(float(np.median(r)))
        print(f"\n{name}: hypervolume of round 0 (mean ± s.e. over {args.seeds} seeds); "
              f"the sample's median standardized radius {np.mean(median):.2f}")
        for k in PICKS:
            v = np.asarray(hv[k])
            rad = f"   picks' radius {np.mean(radius[k]):.2f}" if k in radius else ""
            print(f"  {k:<14} {v.mean():8.4g} ± {v.std(ddof=1) / np.sqrt(len(v)):.2g}"
                  f"   zero {np.mean(v == 0):.2f}{rad}", flush=True)
    print(f"\nprocess CPU time {time.process_time() - c0:.1f} s; load (1/5/15 min) "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
