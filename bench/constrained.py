"""Constrained campaigns: fraction of feasible queries per round, tiltloop with the constraint
(``[[constraints]]``: constraint GP, `α log PoF` in the SMC reward, constrained qLogNEI) next to
tiltloop without it (the same loop, blind to the constraint), same seeds, interleaved.

Problems (half the prior's support is infeasible; the constraint bound is the median of the
constrained coordinate over the problem's historical designs):

* ``gmm-toy`` — the bundled 9-mode mixture on `{−4, 0, 4}²`; objective
  `y = e^{−|x − (4, 4)|²/8} + 0.8 e^{−|x − (−4, −4)|²/8}`; constraint `x₀ ≤ median` (≈ 0): the
  higher bump is infeasible, the lower one deep inside the feasible half.
* ``manifold`` — the bundled 16-d manifold prior and its oracle (Hartmann6 in manifold
  coordinates `u ∈ [0, 1]⁶` minus the off-manifold penalty); constraint `u₆ ≤ median` (≈ 0.5):
  Hartmann6's global maximum (`u₆ = 0.66`) is infeasible, its second local maximum
  (`u₆ = 0.04`, value 3.20) feasible.

Methods run in this process like ``bench/campaigns.py`` (``bench/campaign_methods.py``'s
``tiltloop-new``: the loop's defaults; no Ray, no database). Printed per (problem, method): the
feasible fraction of each round's queries (mean over seeds), of the queries of rounds ≥ 2
(0-based: after the plain-prior round 0 and the first tilted round 1; the acceptance figure:
≥ 0.9 with the constraint), the best feasible value, process CPU and wall
seconds, and the load before and after.

    .venv/bin/python bench/constrained.py                          # gmm-toy, 5 seeds, 6 x 8
    .venv/bin/python bench/constrained.py --problems manifold --seeds 3 --rounds 5
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/constrained.py`

from bench.campaign_methods import MethodSettings, Proposal, TiltLoopNew, _Data  # noqa: E402
from bench.campaign_problems import Problem, load_problem  # noqa: E402

METHODS = ("constrained", "unconstrained")


@dataclasses.dataclass(frozen=True)
class Run:
    """One campaign: `rounds x q` feasible flags and true values, CPU and wall seconds."""

    feasible: np.ndarray
    values: np.ndarray
    cpu_s: float
    wall_s: float


@dataclasses.dataclass(frozen=True)
class Constrained:
    """A problem, its constraint coordinate `c(x)` and the bound: feasible ⇔ `c(x) ≤ bound`."""

    problem: Problem
    coordinate: Callable[[Tensor], Tensor]
    bound: float
    rule: str

    def slack(self, designs: Tensor) -> Tensor:
        """`c(x) − bound` (feasible ⇔ `≤ 0`), float64."""
        return self.coordinate(designs.detach().to(torch.float64).cpu()) - self.bound


def load_constrained(name: str) -> Constrained:
    """``gmm-toy`` or ``manifold`` with its constraint (module docstring)."""
    if name == "gmm-toy":
        def two_bumps(x: Tensor) -> Tensor:
            far = torch.exp(-((x - 4.0) ** 2).sum(-1) / 8)
            return far + 0.8 * torch.exp(-((x + 4.0) ** 2).sum(-1) / 8)

        problem = dataclasses.replace(load_problem("gmm-toy"), oracle_value=two_bumps, optimum=None)

        def coordinate(x: Tensor) -> Tensor:
            return x[:, 0]
    elif name == "manifold":
        from oracles.simulated.manifold import ManifoldOracle

        problem = load_problem("manifold")
        geometry = ManifoldOracle().problem

        def coordinate(x: Tensor) -> Tensor:
            return geometry.project(x)[0][:, 5]
    else:
        raise ValueError(f"--problems: unknown problem {name!r}; choose gmm-toy or manifold")
    bound = float(coordinate(problem.historical.to(torch.float64)).median())
    rule = f"{'x0' if name == 'gmm-toy' else 'u6'} <= {bound:.3f} (its median)"
    return Constrained(problem, coordinate, bound, rule)


class ConstrainedTiltLoop(TiltLoopNew):
    """``tiltloop-new`` with one outcome constraint: the surrogate's second column is the slack
    (``SurrogateConfig.num_constraints = 1``), the reward adds `α log PoF`, screening is
    constrained (all as the campaign loop does with ``[[constraints]]``)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        from optimizer.campaign.surrogate import SurrogateAdapter
        from optimizer.surrogate.config import SurrogateConfig

        self.adapter = SurrogateAdapter(self.bundle, SurrogateConfig(
            beta=self.s.beta, seed=self.seed % (2**31), num_constraints=1))
        self.C: list[float] = []

    def tell_slack(self, slack: Tensor) -> None:
        self.C.extend(slack.tolist())

    def _fit(self):
        Y = np.column_stack([np.asarray(self.Y), np.asarray(self.C)])
        return self.adapter.fit(_Data(torch.stack(self.X).numpy(), Y, None)).model

    def _reward(self, model, alpha: float):
        return model.reward(beta=self.s.beta, alpha=alpha)


def run(cp: Constrained, method: str, seed: int, *, rounds: int, q: int,
        settings: MethodSettings) -> Run:
    """One campaign: per round the feasible flags and values; CPU and wall seconds."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    cls = ConstrainedTiltLoop if method == "constrained" else TiltLoopNew
    m = cls(cp.problem, q, seed, settings)
    feasible, values = [], []
    for r in range(rounds):
        prop: Proposal = m.ask(r)
        y, slack = cp.problem.value(prop.designs), cp.slack(prop.designs)
        m.tell(prop.designs, y)
        if isinstance(m, ConstrainedTiltLoop):
            m.tell_slack(slack)
        feasible.append((slack <= 0).numpy())
        values.append(y.numpy())
    return Run(np.stack(feasible), np.stack(values), time.process_time() - cpu0,
               time.perf_counter() - wall0)


def report(name: str, cp: Constrained, runs: dict[str, list[Run]],
           rounds: int) -> list[str]:
    lines = [f"\n== {name}: constraint {cp.rule}; feasible fraction of each round's queries "
             f"(mean over {len(runs[METHODS[0]])} seeds)"]
    lines.append(f"{'method':<14}" + "".join(f"  r{r:<4}" for r in range(rounds))
                 + "  r>=2 (min seed)       best feasible     CPU s   wall s")
    for method in METHODS:
        rs = runs[method]
        F = np.stack([r.feasible for r in rs])        # seeds x rounds x q
        V = np.stack([r.values for r in rs])
        per_round = F.mean(axis=(0, 2))
        late = F[:, 2:].mean(axis=(1, 2))                 # per seed, rounds >= 2
        best = [float(v[f].max()) if f.any() else float("nan") for v, f in zip(V, F)]
        cpu = sum(r.cpu_s for r in rs)
        wall = sum(r.wall_s for r in rs)
        lines.append(f"{method:<14}" + "".join(f"  {v:5.2f}" for v in per_round)
                     + f"  {late.mean():5.3f} ({late.min():4.2f})     "
                     f"{np.nanmean(best):7.4f} ± {np.nanstd(best) / np.sqrt(len(best)):.4f}"
                     f"  {cpu:7.1f}  {wall:7.1f}")
    late_c = np.stack([r.feasible for r in runs["constrained"]])[:, 2:].mean()
    lines.append(f"acceptance (feasible in rounds >= 2 >= 0.9, constrained): "
                 f"{'PASS' if late_c >= 0.9 else 'FAIL'} ({late_c:.3f})")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="gmm-toy", help="comma-separated: gmm-toy, manifold")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--particles", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="A not p.d., added jitter")  # GPyTorch's, per fit
    settings = MethodSettings(num_particles=args.particles, num_steps=args.steps)
    load0 = os.getloadavg()
    print(f"load before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (cores: {os.cpu_count()}); "
          f"{args.seeds} seeds x {args.rounds} rounds x q={args.q}, {args.particles} particles, "
          f"{args.steps} steps", flush=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for name in args.problems.split(","):
        cp = load_constrained(name.strip())
        runs: dict[str, list[Run]] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            for method in METHODS:  # interleaved: both methods see the same load
                r = run(cp, method, seed, rounds=args.rounds, q=args.q, settings=settings)
                runs[method].append(r)
                print(f"  {name} seed {seed} {method:<13} feasible after r2 "
                      f"{r.feasible[2:].mean():.2f}  cpu {r.cpu_s:.1f}s wall {r.wall_s:.1f}s", flush=True)
        out = report(name, cp, runs, args.rounds)
        print("\n".join(out), flush=True)  # each problem's table as soon as it is done
    load1 = os.getloadavg()
    print(f"\nprocess CPU {time.process_time() - cpu0:.1f} s, wall {time.perf_counter() - wall0:.1f} s; "
          f"load after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
