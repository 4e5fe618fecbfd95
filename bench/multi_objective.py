"""Multi-objective benchmark: hypervolume vs queries, tiltloop (ParEGO + qLogNEHVI) vs baselines.

Two two-objective problems, both maximized and noise-free, on the bundled priors:

* ``manifold-mo`` — the manifold prior (`d = 16`); DTLZ2 (BoTorch, `dim = 6`, 2 objectives,
  negated) of the design's manifold coordinates `u*(x)`, each objective minus `25 · dist²`
  (the manifold problem's off-manifold penalty, ``oracles/simulated/manifold.py``);
* ``manifold-mo-c`` (not in the default run) — ``manifold-mo`` with one outcome constraint,
  `u₁ ≤` its median over the prior's data: half the prior's mass and half of DTLZ2's front
  (parametrized by `u₁`) are infeasible. ``tiltloop`` is then the loop's Pareto campaign with
  ``[[constraints]]`` (a GP on the slack, each chunk's ParEGO target times PoF, constrained
  qLogNEHVI), ``tiltloop-blind`` the same loop without the constraint; the hypervolume counts
  feasible queries only, and the table adds the feasible fraction of rounds ≥ 2;
* ``digits-mo`` — the digits prior (`1 x 8 x 8`); the log-odds of "3" and of "8" under the
  project's seeded digit classifier, each with the off-data penalty of the single-objective
  digits problem (``DigitScorerOracle.lab``): a 3 that looks like an 8 is the trade-off.

Methods, the same budget (``--rounds`` x ``--q``) and seeds for each, all in this process:

1. ``tiltloop`` — the loop's Pareto campaign in one process: a two-objective GP, DAS tilted by
   ParEGO (``--chunks`` chunks per round, each with its own weights on the simplex,
   ``optimizer.surrogate.pareto.parego_weights``), candidates screened by qLogNEHVI
   (``SurrogateAdapter`` with ``scalarization = "parego"``); round 0: plain prior, k-means
   medoids (``spacefill.typical_select``; ``tiltloop-maximin``: the maximin pick it replaced);
2. ``ax`` — Ax ``Client`` with two objectives (its default multi-objective strategy: Sobol, then
   its BoTorch model with qLogNEHVI, the reference inferred), in the raw box of the data;
3. ``random`` — `q` plain prior samples per round.

Hypervolume (``optimizer.surrogate.pareto.hypervolume``) of the queries so far above one fixed
reference point per problem: each objective's lower quartile over the prior's training data (a
design counts in an objective only above the worst quarter of the real designs; the median left
20-query campaigns at zero on ``manifold-mo``, where 6% of real designs beat it in both).
Printed per query count: mean ± standard error over seeds; then each method's wall and process
CPU time, and the load.

    .venv/bin/python bench/multi_objective.py                      # 5 seeds, 5 rounds x 4
    .venv/bin/python bench/multi_objective.py --seeds 1 --rounds 2 --q 2 --particles 16 --steps 4
    .venv/bin/python bench/multi_objective.py --problems manifold-mo-c --methods tiltloop,random
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/multi_objective.py`

from bench.campaign_methods import (  # noqa: E402
    AX_MISSING, AxRaw, MethodSettings, RandomPrior, TiltLoop, _Base, _Data, ax_client,
    ax_available)
from bench.campaign_problems import Problem, load_problem  # noqa: E402

PROBLEMS = ("manifold-mo", "digits-mo")  # also "manifold-mo-c": with a constraint
METHODS = ("tiltloop", "ax", "random")  # also "tiltloop-maximin": round 0 as before the fix
OBJECTIVES = ("f1", "f2")
#: the hypervolume's reference: this quantile of each objective over the prior's training data
REFERENCE_QUANTILE = 0.25


@dataclass(frozen=True)
class MOProblem:
    """A two-objective problem: ``base`` (prior, feature map, raw box) with ``value`` returning
    `B x 2` (maximized) and the fixed hypervolume ``reference``; a constrained one has ``slack``
    (`B` designs → `B` slacks, feasible ⇔ `≤ 0`) and its ``rule`` in words."""

    name: str
    base: Problem
    reference: np.ndarray
    slack: Any = None
    rule: str = ""


def load_mo_problem(name: str) -> MOProblem:
    """Build ``manifold-mo``, ``manifold-mo-c`` or ``digits-mo`` (module docstring)."""
    if name == "manifold-mo-c":
        from oracles.simulated.manifold import ManifoldProblem

        p, geo = load_mo_problem("manifold-mo"), ManifoldProblem()

        def u1(x: Tensor) -> Tensor:
            return geo.project(x.reshape(len(x), -1).to(torch.float64))[0][:, 0]

        bound = float(u1(p.base.historical[:1024]).median())
        return MOProblem(name, p.base, p.reference, lambda x: u1(x) - bound,
                         f"u1 <= {bound:.3f} (its median over the prior's data)")
    if name == "manifold-mo":
        from botorch.test_functions.multi_objective import DTLZ2

        from oracles.simulated.manifold import ManifoldProblem

        base = load_problem("manifold")
        geo, dtlz = ManifoldProblem(), DTLZ2(dim=6, num_objectives=2, negate=True)

        def value(x: Tensor) -> Tensor:
            u, dist = geo.project(x.reshape(len(x), -1))
            return dtlz(u.clamp(0, 1)) - geo.penalty * dist[:, None] ** 2
    elif name == "digits-mo":
        from oracles.simulated.digits import DigitScorerOracle

        base = load_problem("digits")
        oracles = [DigitScorerOracle.lab(target_digit=d, seed=0) for d in (3, 8)]

        def value(x: Tensor) -> Tensor:
            pixels = np.stack([oracles[0].check_design(p) for p in x.numpy()])
            return torch.from_numpy(np.stack([o.values(pixels) for o in oracles], axis=1))
    else:
        raise ValueError(f"--problems: unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    problem = Problem(name, base.prior, base.feature_map, base.support, value, base.historical,
                      base.design_shape, None, base.design_range)
    ref = np.quantile(problem.value(base.historical[:1024]).numpy(), REFERENCE_QUANTILE, axis=0)
    return MOProblem(name, problem, ref)


class TiltLoopPareto(TiltLoop):
    """ParEGO-tilted DAS per chunk, qLogNEHVI screening (the loop's Pareto campaign)."""

    chunks = 4
    #: round 0's pick: "typical" (k-means medoids, the loop's) or "maximin" (before the fix)
    round0 = "typical"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        from optimizer.campaign.surrogate import SurrogateAdapter
        from optimizer.surrogate.config import SurrogateConfig

        cfg = SurrogateConfig(beta=self.s.beta, seed=self.seed % (2**31), scalarization="parego")
        assert cfg.acquisition == "qlognehvi"
        self.adapter = SurrogateAdapter(self.bundle, cfg)

    def _fit(self):
        data = _Data(torch.stack(self.X).numpy(), np.asarray(self.Y, dtype=np.float64), None)
        return self.adapter.fit(data).model

    def ask(self, r: int):
        from bench.campaign_methods import Proposal
        from optimizer.das import sample
        from optimizer.surrogate.pareto import parego_weights

        if len(self.Y) < 2:  # round 0: typical designs of the prior sample, as the loop's
            from optimizer.campaign.spacefill import maximin_select, typical_select
            from optimizer.seeds import derive_seed

            particles = self._prior_particles(r, self.s.num_particles)
            pick = maximin_select if self.round0 == "maximin" else typical_select
            idx = pick(self.bundle.features_np(particles.numpy()), self.q,
                       seed=derive_seed(self.seed, r, 0, "spacefill"))
            return Proposal(particles[idx], families=self.q)
        model = self._fit()
        parts, fams = [], []
        n = max(2, self.s.num_particles // self.chunks)
        for c in range(self.chunks):
            w = parego_weights(self.seed, r, c, len(OBJECTIVES))
            reward = model.reward(beta=self.s.beta, weights=w)
            spread = float(reward.scalarization(model.train_Y.to(model.dtype)).std())
            alpha = self.s.alpha_rel * max(spread, 1e-6)
            if model.config.num_constraints:  # the target times PoF, as the loop's chunks
                reward = model.reward(beta=self.s.beta, weights=w, alpha=alpha)
            res = sample(self.problem.prior, reward, num_particles=n,
                         alpha=alpha, num_steps=self.s.num_steps,
                         generator=self._gen(r, f"smc/{c}"), tempering="predictive")
            parts.append(res.samples.detach())
            fams.append(c * n + res.origin.reshape(-1).cpu().numpy().astype(np.int64))
        particles, families = torch.cat(parts), np.concatenate(fams)
        prop = self._screened(r, model, particles, families)
        return Proposal(prop.designs, prop.predicted,
                        families=len(set(families[self._last_selected].tolist())))


class TiltLoopParetoConstrained(TiltLoopPareto):
    """``tiltloop`` with one outcome constraint (the loop's Pareto campaign with
    ``[[constraints]]``): a GP on the slack, each chunk's ParEGO target times PoF, constrained
    qLogNEHVI screening."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        from optimizer.campaign.surrogate import SurrogateAdapter
        from optimizer.surrogate.config import SurrogateConfig

        self.adapter = SurrogateAdapter(self.bundle, SurrogateConfig(
            beta=self.s.beta, seed=self.seed % (2**31), scalarization="parego", num_constraints=1))
        self.C: list[float] = []

    def tell_slack(self, slack: Tensor) -> None:
        self.C.extend(slack.tolist())

    def _fit(self):
        Y = np.column_stack([np.asarray(self.Y, dtype=np.float64), np.asarray(self.C)])
        return self.adapter.fit(_Data(torch.stack(self.X).numpy(), Y, None)).model


class TiltLoopParetoMaximin(TiltLoopPareto):
    """``tiltloop`` with round 0's maximin pick (the loop's Pareto round 0 before k-means)."""

    round0 = "maximin"


class AxRawMO(AxRaw):
    """Ax ``Client`` with two objectives (its default multi-objective strategy), raw box."""

    def __init__(self, problem: Problem, q: int, seed: int, settings: MethodSettings) -> None:
        _Base.__init__(self, problem, q, seed, settings)
        self.client, self.names = ax_client(self.problem, self.seed, ", ".join(OBJECTIVES))
        self.pending: list[int] = []

    def _complete(self, values: Tensor) -> None:
        for idx, v in zip(self.pending, values.tolist(), strict=True):
            self.client.complete_trial(trial_index=idx, raw_data=dict(zip(OBJECTIVES, map(float, v))))
        self.pending = []

    def _complete_pending_now(self, rows: list[list[float]]) -> None:
        start = len(rows) - len(self.pending)
        self._complete(self.problem.value(torch.tensor(rows[start:], dtype=torch.float64).reshape(
            -1, *self.problem.design_shape)))

    def tell(self, designs: Tensor, values: Tensor) -> None:
        _Base.tell(self, designs, values)
        self._complete(values[len(values) - len(self.pending):])


def make_mo_method(name: str, problem: Problem, q: int, seed: int, settings: MethodSettings) -> _Base:
    """A fresh ask/tell object for ``name`` (one of ``METHODS``)."""
    if name == "ax" and not ax_available():
        raise ImportError(AX_MISSING)
    classes = {"tiltloop": TiltLoopPareto, "tiltloop-maximin": TiltLoopParetoMaximin,
               "tiltloop-constrained": TiltLoopParetoConstrained, "ax": AxRawMO,
               "random": RandomPrior}
    if name not in classes:
        raise ValueError(f"--methods: unknown method {name!r}; choose from {', '.join(METHODS)}")
    return classes[name](problem, q, seed, settings)


@dataclass(frozen=True)
class MORun:
    """One campaign: `rounds·q x 2` true values in query order, hypervolume after each query
    (of the feasible ones on a constrained problem), wall and process CPU seconds, and on a
    constrained problem each query's feasibility."""

    problem: str
    method: str
    seed: int
    values: np.ndarray
    hypervolume: np.ndarray
    seconds: float
    cpu_seconds: float
    feasible: np.ndarray | None = None


def run_mo_campaign(p: MOProblem, method: str, seed: int, *, rounds: int, q: int,
                    settings: MethodSettings) -> MORun:
    """``rounds`` rounds of ``q`` queries of ``method`` on ``p`` (on a constrained problem
    ``tiltloop`` is ``tiltloop-constrained``; ``tiltloop-blind`` the loop without the
    constraint)."""
    from optimizer.surrogate.pareto import hypervolume_trace

    t0, c0 = time.perf_counter(), time.process_time()
    kind = {"tiltloop": "tiltloop-constrained" if p.slack is not None else "tiltloop",
            "tiltloop-blind": "tiltloop"}.get(method, method)
    m: Any = make_mo_method(kind, p.base, q, seed, settings)  # every method has ask/tell
    values, feasible = [], []
    for r in range(rounds):
        designs = m.ask(r).designs
        if tuple(designs.shape) != (q, *p.base.design_shape):
            raise RuntimeError(f"{method} proposed shape {tuple(designs.shape)} in round {r}")
        y = p.base.value(designs)
        m.tell(designs, y)
        if p.slack is not None:
            slack = p.slack(designs)
            if hasattr(m, "tell_slack"):
                m.tell_slack(slack)
            feasible.append((slack <= 0).numpy())
        values.append(y.numpy())
    V = np.concatenate(values)
    ok = np.concatenate(feasible) if feasible else None
    counted = V if ok is None else np.where(ok[:, None], V, np.nan)  # infeasible: on no front
    hv = np.asarray(hypervolume_trace(counted, p.reference, range(1, len(V) + 1)))
    return MORun(p.name, method, seed, V, hv, time.perf_counter() - t0, time.process_time() - c0,
                 ok)


def _mse(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _cell(x: np.ndarray) -> str:
    m, se = _mse(x)
    return f"{m:.4g} ± {se:.2g}"


def table(runs: list[MORun], q: int, rounds: int) -> str:
    """Hypervolume at each round's end (mean ± s.e. over seeds), then time per campaign; on a
    constrained problem the hypervolume of the feasible queries and the feasible fraction of
    rounds ≥ 2 (0-based: after round 0 and the first tilted round)."""
    counts = [q * (r + 1) for r in range(rounds)]
    lines = []
    for prob in dict.fromkeys(r.problem for r in runs):
        lines.append(f"\n{prob}: hypervolume after N queries (mean ± s.e. over seeds)")
        lines.append(f"  {'method':<10}" + "".join(f"{'N=' + str(n):>18}" for n in counts)
                     + f"{'wall s':>10}{'CPU s':>10}")
        for meth in dict.fromkeys(r.method for r in runs if r.problem == prob):
            rs = [r for r in runs if r.problem == prob and r.method == meth]
            cells = "".join(f"{_cell(np.array([r.hypervolume[n - 1] for r in rs])):>18}"
                            for n in counts)
            flags = [r.feasible for r in rs if r.feasible is not None]
            late = ("   feasible r>=2 " + _cell(np.array([f[2 * q:].mean() for f in flags]))
                    if flags else "")
            lines.append(f"  {meth:<10}{cells}{np.mean([r.seconds for r in rs]):>10.1f}"
                         f"{np.mean([r.cpu_seconds for r in rs]):>10.1f}"
                         + f"   ({len(rs)} seeds){late}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (split a long run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--q", type=int, default=4)
    ap.add_argument("--particles", type=int, default=128, help="SMC particles per round (tiltloop)")
    ap.add_argument("--steps", type=int, default=20, help="DAS / prior sampling steps")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    problems = [p for p in args.problems.split(",") if p]
    methods = [m for m in args.methods.split(",") if m]
    if "ax" in methods and not ax_available():
        print(f"skipping ax: {AX_MISSING}")
        methods.remove("ax")
    settings = MethodSettings(num_particles=args.particles, num_steps=args.steps)
    print(f"multi-objective bench: problems {problems}, methods {methods}, {args.seeds} seeds, "
          f"{args.rounds} rounds x q={args.q}, {settings!r}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    runs = []
    c0 = time.process_time()
    for name in problems:
        p = load_mo_problem(name)
        print(f"{name}: reference point {np.round(p.reference, 4).tolist()}"
              + (f"; constraint {p.rule}" if p.slack is not None else ""), flush=True)
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for meth in methods + (["tiltloop-blind"] if p.slack is not None and "tiltloop"
                                   in methods else []):  # interleaved: each seed runs all
                r = run_mo_campaign(p, meth, seed, rounds=args.rounds, q=args.q, settings=settings)
                runs.append(r)
                print(f"  {name} {meth} seed {seed}: hypervolume {r.hypervolume[-1]:.4g}, "
                      f"{r.seconds:.1f} s wall, {r.cpu_seconds:.1f} s CPU, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            if seed < args.seed_start + args.seeds - 1:  # the table so far, readable while it runs
                print(table(runs, args.q, args.rounds), flush=True)
    print(table(runs, args.q, args.rounds))
    print(f"\nprocess CPU time {time.process_time() - c0:.0f} s; load (1/5/15 min) "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
