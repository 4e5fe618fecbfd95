"""SMC with the GP surrogate as its reward, relative to a zero reward, as the particles grow.

    .venv/bin/python bench/gp_reward_bench.py                      # N = 4,096 and 16,384
    .venv/bin/python bench/gp_reward_bench.py --sizes 4096 --repeats 3 --steps 40

The bundled manifold prior (`d = 16`, its own feature map) samples `N` particles with DAS
(``alpha``, ``--steps`` steps, default options otherwise: guidance "auto", so the differentiable
GP reward runs guided and the zero reward gradient-free, as in a campaign's worker). The GP is a
``Surrogate`` fitted on ``--n`` prior samples of a smooth stand-in objective. Three rewards run
side by side, interleaved, ``--repeats`` times each, on the same seeds:

* zero: `r = 0` (the round-0 sampler, the baseline of every ratio);
* botorch: `r̂ = μ + β σ` from BoTorch's joint posterior (the reward before this change: it
  builds the `N x N` covariance of every step's particles only to read its diagonal);
* cached: the same `r̂` from cached solves in chunks (``Surrogate.marginal_mean_var``);
* cached-free: the cached `r̂` with guidance "none": the GP's own cost without the guided
  proposal's backward pass through the denoiser;
* floor: a trivial differentiable reward (`−10⁻³‖x‖²`) run guided: what guidance alone costs,
  the least any differentiable reward can cost with guidance on.

Printed per reward and `N`: median wall and process CPU seconds (all threads), the ratio to zero
(wall and CPU), and the peak resident set of the run (``VmHWM``, reset before each run through
``/proc/self/clear_refs``; coarse: includes the allocator's retained memory). The machine load
(``os.getloadavg()``) is printed before each size and at the end. The largest `|r̂_cached −
r̂_botorch|` over the final particles of one run checks that both rewards are the same function.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.das import sample  # noqa: E402
from optimizer.das.config import DASOptions  # noqa: E402
from optimizer.surrogate import Surrogate, SurrogateConfig  # noqa: E402
from optimizer.workers.components import load_prior_bundle, zero_reward  # noqa: E402


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def fit_surrogate(bundle, n: int, steps: int, beta: float) -> Surrogate:
    with torch.no_grad():
        draws = sample(bundle.prior, zero_reward, num_particles=n, alpha=1.0, num_steps=steps,
                       guidance="none", generator=torch.Generator().manual_seed(1))
    X = draws.samples.double()
    Y = -(X - X.mean(0)).norm(dim=1, keepdim=True) + 0.1 * torch.sin(3 * X[:, :1])
    return Surrogate.fit(X, Y, None, feature_map=bundle.feature_map,
                         config=SurrogateConfig(beta=beta))


def floor_reward(x: torch.Tensor) -> torch.Tensor:
    """A trivial differentiable reward: the guided proposal's cost with a free reward."""
    return -1e-3 * x.pow(2).sum(-1)


def one_run(bundle, reward, N: int, steps: int, alpha: float, seed: int):
    """One DAS run; ``reward`` is ``(callable, guidance)``: peak RSS, wall and CPU seconds."""
    fn, guidance = reward
    reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = sample(bundle.prior, fn, num_particles=N, alpha=alpha,
                 generator=torch.Generator().manual_seed(seed),
                 **DASOptions(num_steps=steps, guidance=guidance).sample_kwargs())
    return time.perf_counter() - t0, time.process_time() - c0, peak_rss_gb(), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--n", type=int, default=200, help="observations of the GP")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--alpha", type=float, default=0.2)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--skip-botorch-above", type=int, default=1 << 30,
                    help="leave out the old reward above this N (it is slow and large)")
    ap.add_argument("--profile", action="store_true",
                    help="then profile one guided run of the cached reward and of the floor at the "
                         "largest N: where the guided GP reward's time goes")
    args = ap.parse_args()
    bundle = load_prior_bundle("manifold")
    sur = fit_surrogate(bundle, args.n, args.steps, args.beta)
    cached = sur.reward()
    rewards = {"zero": (zero_reward, "auto"), "botorch": (sur.reward(method="botorch"), "auto"),
               "cached": (cached, "auto"), "cached-free": (cached, "none"),
               "floor": (floor_reward, "gradient")}
    print(f"gp reward bench: manifold prior, n={args.n} observations, {args.steps} steps, "
          f"alpha={args.alpha}, beta={args.beta}, threads={torch.get_num_threads()}, "
          f"repeats={args.repeats}, peak RSS reset per run: {reset_peak()}")
    for reward in rewards.values():  # warm-up: first-call costs (threads, allocator, caches)
        one_run(bundle, reward, 256, 2, args.alpha, seed=0)
    head = (f"{'N':>6} {'reward':>11} {'wall s':>8} {'cpu s':>8} {'÷zero wall':>10} "
            f"{'÷zero cpu':>9} {'peak RSS GB':>11}")
    for N in args.sizes:
        print(f"\nload before N={N}: {os.getloadavg()}")
        print(head)
        print("-" * len(head))
        names = [k for k in rewards if k != "botorch" or N <= args.skip_botorch_above]
        runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
        finals = {}
        for rep in range(args.repeats):  # interleaved: zero, botorch, cached, zero, ...
            for name in names:
                wall, cpu, rss, out = one_run(bundle, rewards[name], N, args.steps, args.alpha,
                                              seed=100 + rep)
                runs[name].append((wall, cpu, rss))
                finals[name] = out.samples.detach()
        base_w = statistics.median(r[0] for r in runs["zero"])
        base_c = statistics.median(r[1] for r in runs["zero"])
        for name in names:
            w = statistics.median(r[0] for r in runs[name])
            c = statistics.median(r[1] for r in runs[name])
            rss = max(r[2] for r in runs[name])
            print(f"{N:>6} {name:>11} {w:>8.2f} {c:>8.2f} {w / base_w:>10.2f} {c / base_c:>9.2f} "
                  f"{rss:>11.2f}", flush=True)
        if "botorch" in finals:
            with torch.no_grad():
                P = finals["cached"][:4096].double()  # float32 designs round r̂ to float32
                diff = (rewards["cached"][0](P) - rewards["botorch"][0](P)).abs().max()
            print(f"max |r̂_cached − r̂_botorch| on 4,096 final particles: {float(diff):.2e}")
    if args.profile:
        for name in ("cached", "floor"):
            profile_run(bundle, rewards[name], max(args.sizes), args.steps, args.alpha, name)
    print(f"\nload at the end: {os.getloadavg()}")


def profile_run(bundle, reward, N: int, steps: int, alpha: float, name: str, top: int = 14) -> None:
    """cProfile of one run: the functions with the most own time (tottime), as a share of the
    run's total, so the gap between the guided GP reward and the floor has names."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    one_run(bundle, reward, N, steps, alpha, seed=7)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    print(f"\nprofile: {name}, N={N}, {steps} steps: {total:.2f} s of own time in Python frames "
          "(torch ops are the built-in rows)")
    for (file, line, func), (_, calls, tottime, _cum, _) in rows:
        where = f"{Path(file).name}:{line}({func})" if line else func
        print(f"  {tottime:7.2f} s {100 * tottime / total:5.1f}%  {calls:>8} calls  {where[:90]}")


if __name__ == "__main__":
    main()
