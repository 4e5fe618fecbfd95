"""Surrogate cost: fit time and pre-screening time vs observations and candidates.

    .venv/bin/python bench/surrogate_bench.py [--d 8] [--q 4] [--exact-up-to 500]

For n = 100, 500, 2,000 observations of a smooth `d`-dim function (noise 0.05):

* fit: ``Surrogate.fit`` with the default config (hyperparameters on a 300-point subset above 300
  observations, posterior on all data), and, for n ≤ ``--exact-up-to``, the exact fit on all n
  side by side (ratio printed);
* reward: one call of `r̂` with its gradient on 1,000 particles (what SMC pays per step);
* screening: ``screen`` (qLogNEI, q designs, 2 pending) over M = 1,000 and 10,000 candidates;
* quality: held-out RMSE of the posterior mean (so a cheap fit that is wrong shows up).

Times are wall seconds (and, for fit and screening, process CPU seconds summed over threads, less
sensitive to other load) on this machine with ``torch.get_num_threads()`` threads (printed).
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from optimizer.surrogate import Surrogate, SurrogateConfig, screen


def truth(X: torch.Tensor) -> torch.Tensor:
    return (torch.sin(3 * X).sum(-1) - (X ** 2).sum(-1)).unsqueeze(-1) / math.sqrt(X.shape[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--q", type=int, default=4)
    ap.add_argument("--exact-up-to", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    ap.add_argument("--candidates", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    d = args.d
    Xt = torch.rand(2000, d, generator=g, dtype=torch.float64) * 2 - 1
    print(f"surrogate bench: d={d}, q={args.q}, threads={torch.get_num_threads()}, "
          f"default SurrogateConfig(fit_subset_size={SurrogateConfig().fit_subset_size})")
    head = (f"{'n':>6} {'fit s':>7} {'fit cpu':>7} {'exact s':>8} {'ratio':>6} {'rmse':>6} "
            f"{'exact rmse':>10} {'r̂+grad 1k s':>12}"
            + "".join(f" {'screen M=' + str(m) + ' s (cpu)':>24}" for m in args.candidates))
    print(head)
    print("-" * len(head))
    prev = None
    for n in args.sizes:
        X = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
        Y = truth(X) + 0.05 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        t0, c0 = time.perf_counter(), time.process_time()
        sur = Surrogate.fit(X, Y)
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        rmse = float(((sur.posterior_mean_std(Xt)[0] - truth(Xt)) ** 2).mean().sqrt())
        t_exact, rmse_exact = float("nan"), float("nan")
        if n <= args.exact_up_to:
            cfg = SurrogateConfig(fit_subset_size=n, max_conditioning_size=max(n, 4000))
            t0 = time.perf_counter()
            ex = Surrogate.fit(X, Y, config=cfg)
            t_exact = time.perf_counter() - t0
            rmse_exact = float(((ex.posterior_mean_std(Xt)[0] - truth(Xt)) ** 2).mean().sqrt())
        P = torch.rand(1000, d, generator=g, dtype=torch.float64).requires_grad_(True)
        t0 = time.perf_counter()
        sur.reward(beta=2.0)(P).sum().backward()
        t_rew = time.perf_counter() - t0
        t_screen = []
        for M in args.candidates:
            C = torch.rand(M, d, generator=g, dtype=torch.float64) * 2 - 1
            t0, c0 = time.perf_counter(), time.process_time()
            screen(sur, C, args.q, pending=C[:2].clone() + 0.01, seed=0)
            t_screen.append(f"{time.perf_counter() - t0:.2f} ({time.process_time() - c0:.2f})")
        ratio = t_exact / t_fit if not math.isnan(t_exact) else float("nan")
        print(f"{n:>6} {t_fit:>7.2f} {c_fit:>7.2f} {t_exact:>8.2f} {ratio:>6.1f} {rmse:>6.3f} "
              f"{rmse_exact:>10.3f} {t_rew:>12.3f}" + "".join(f" {t:>24}" for t in t_screen),
              flush=True)
        prev = sur
    # warm start: refit the largest size from the previous state
    if prev is not None:
        t0 = time.perf_counter()
        again = Surrogate.fit(prev.train_X, prev.train_Y, previous=prev.state())
        print(f"warm-started refit at n={prev.train_X.shape[0]}: {time.perf_counter() - t0:.2f} s "
              f"(cold {prev.fit_info.seconds:.2f} s), warm_started={again.fit_info.warm_started}")


if __name__ == "__main__":
    main()
