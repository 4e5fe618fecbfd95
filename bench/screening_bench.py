"""Screening at scale: the reference path (exact, no prefilter) vs the fast path, side by side.

    PYTHONPATH=. .venv/bin/python bench/screening_bench.py [--sizes 2000 4000 10000] [--M 1000]
        [--q 8] [--repeats 2] [--before-up-to 4000]

For each n (observations of a smooth 8-dim function, noise 0.05; default ``SurrogateConfig``,
so the GP conditions on at most ``max_conditioning_size`` = 4,000 of them) and M candidates
drawn around the best observations (like SMC particles tilted towards them), with 2 pending:

* wall and process CPU seconds of ``screen(method="botorch")`` (before: every candidate through
  qLogNEI, the full baseline, GPyTorch's posterior) and ``screen()`` (after: prefilter, bounded
  baseline, finite-set posterior, local subset above ``screen_exact_max_observations``),
  interleaved and repeated; one torch thread (as the driver runs screening);
* quality: each batch's joint qLogNEI value under the *reference* acquisition (the exact GP, the
  full baseline, same quasi-MC seed), the true mean value of each batch, and for an approximate
  (local-subset) posterior its error against the exact posterior at the candidates: RMSE of the
  mean relative to the exact std, max |Δσ| / σ, and both held-out RMSEs against the truth.

The "before" is skipped above ``--before-up-to`` (it takes minutes there); the quality columns
then compare against the exact posterior and the reference acquisition only.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from botorch.acquisition.objective import GenericMCObjective
from botorch.sampling import SobolQMCNormalSampler

from optimizer.surrogate import Surrogate, SurrogateConfig, screen
from optimizer.surrogate.finite import Conditioning, local_rows
from optimizer.surrogate.screening import _acqf


def truth(X: torch.Tensor) -> torch.Tensor:
    return (torch.sin(3 * X).sum(-1) - (X ** 2).sum(-1)).unsqueeze(-1) / math.sqrt(X.shape[-1])


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_size(n: int, args: argparse.Namespace, cfg: SurrogateConfig) -> None:
    """Time and compare both paths at ``n`` observations (module docstring)."""
    d, q = args.d, args.q
    g = torch.Generator().manual_seed(n)
    X = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
    Y = truth(X) + 0.05 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    sur = Surrogate.fit(X, Y)
    best = X[torch.argsort(Y[:, 0], descending=True)[:50]]
    C = (best[torch.randint(0, 50, (args.M,), generator=g)]
         + 0.15 * torch.randn(args.M, d, generator=g, dtype=torch.float64)).clamp(-1, 1)
    pend = C[:2].clone() + 0.01
    run_before = n <= args.before_up_to
    t_b, c_b, t_a, c_a = [], [], [], []
    before = after = None
    for _ in range(args.repeats):  # interleaved
        if run_before:
            before, t, c = timed(lambda: screen(sur, C, q, pending=pend, seed=0,
                                                method="botorch"))
            t_b.append(t)
            c_b.append(c)
        after, t, c = timed(lambda: screen(sur, C, q, pending=pend, seed=0))
        t_a.append(t)
        c_a.append(c)
    assert after is not None
    # quality under the reference acquisition (exact GP, full baseline, same seed)
    gsc = sur.scalarization()
    obj = GenericMCObjective(lambda s, X=None: gsc(s))
    Z, Zp = sur.features(C), sur.features(pend)
    with torch.no_grad():
        ref = _acqf(sur, "qlognei", obj, 1.0,
                    SobolQMCNormalSampler(torch.Size([512]), seed=1), Zp)
        v_after = float(ref(Z[after.selected].unsqueeze(0)))
        v_before = float(ref(Z[before.selected].unsqueeze(0))) if before else float("nan")
    f_after = float(truth(C[after.selected]).mean())
    f_before = float(truth(C[before.selected]).mean()) if before else float("nan")
    same = (sorted(after.selected.tolist()) == sorted(before.selected.tolist())
            if before else "-")
    line = (f"n={n:>6} (cond {sur.cond_idx.numel()}): "
            f"before {min(t_b) if t_b else float('nan'):6.2f} s (cpu "
            f"{min(c_b) if c_b else float('nan'):6.2f})  after {min(t_a):5.2f} s (cpu "
            f"{min(c_a):5.2f})  speed-up {min(t_b) / min(t_a) if t_b else float('nan'):5.1f}x"
            f" | batch qLogNEI (ref) before {v_before:7.3f} after {v_after:7.3f} | "
            f"true mean f before {f_before:6.3f} after {f_after:6.3f} | "
            f"after: scored {after.num_scored}, baseline {after.num_baseline}, "
            f"conditioned on {after.conditioned_on}{' (local subset)' if after.approximate else ''}"
            f"; same picks {same}")
    print(line, flush=True)
    if after.approximate:
        exact = Conditioning.build(sur, sur.cond_idx)
        size = cfg.screen_exact_max_observations
        assert size is not None
        kept = torch.nonzero(torch.isfinite(after.acq_values)).flatten()
        for label, Q in (("all M candidates (prefilter stage)", Z),
                         (f"the {kept.numel()} kept candidates (acquisition stage)", Z[kept])):
            local = Conditioning.build(sur, local_rows(sur, torch.cat([Q, Zp]), size,
                                                       gsc(sur.train_Y)))
            me, ve = exact.mean_var(Q)
            ml, vl = local.mean_var(Q)
            se, sl = ve.sqrt(), vl.sqrt()
            ft = truth(C[:Q.shape[0]] if Q is Z else C[kept])
            print(f"         local-subset posterior vs exact (cond {sur.cond_idx.numel()}) at "
                  f"{label}: RMSE(Δμ) {float((ml - me).pow(2).mean().sqrt()):.4f} (mean σ "
                  f"{float(se.mean()):.4f}), max |Δσ|/σ {float(((sl - se).abs() / se).max()):.3f}"
                  f"; RMSE vs truth: exact {float((me - ft).pow(2).mean().sqrt()):.4f}, "
                  f"local {float((ml - ft).pow(2).mean().sqrt()):.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 10000])
    ap.add_argument("--M", type=int, default=1000)
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--before-up-to", type=int, default=4000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d, q = args.d, args.q
    cfg = SurrogateConfig()
    print(f"screening bench: d={d}, M={args.M}, q={q}, threads={torch.get_num_threads()}, "
          f"prefilter={cfg.screen_prefilter_size}, max_baseline={cfg.screen_max_baseline}, "
          f"exact_max={cfg.screen_exact_max_observations}, "
          f"max_conditioning_size={cfg.max_conditioning_size}; load {loadavg()}")
    for n in args.sizes:
        bench_size(n, args, cfg)
    print(f"load after: {loadavg()}")


if __name__ == "__main__":
    main()
