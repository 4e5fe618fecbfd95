"""Campaign benchmark: oracle value per query, validity and diversity, tiltloop vs baselines.

Same oracle, same budget (``--rounds`` x ``--q`` queries), ``--seeds`` seeds, every method run
in this process (no Ray, no database): ``optimizer.das.sample``, the loop's surrogate adapter and
the simulated oracles called directly. Methods: see ``bench/campaign_methods.py``; problems:
``bench/campaign_problems.py``.

Figures per (problem, method), mean ± standard error over seeds:

* best-so-far true value vs queries (plot) and the final best;
* support: fraction of queried designs on the prior's support (the rule is printed);
* diversity: mean pairwise Euclidean distance within each queried batch (design space);
* wasted: fraction of rounds (from round 1) whose every result is below the running median of
  the earlier rounds' results (``optimizer.campaign.round_diagnostics.wasted_batches``);
* families: distinct ancestor families (SMC founders) per batch, for methods with a lineage;
* gap: mean of (surrogate mean − true value) on the designs a surrogate picked (rounds ≥ 1;
  over-optimization shows as a large positive gap; "n/a" for methods without a surrogate).

Goals (printed PASS/FAIL, never asserted): on each problem tiltloop's final best beats every
baseline; it reaches the best raw-space optimizer's final value with ≤ 50% of that optimizer's
queries; ≥ 95% of its queries are on the support.

    .venv/bin/python bench/campaigns.py --quick                 # 2 seeds, 4 rounds x 8
    .venv/bin/python bench/campaigns.py --problems manifold     # 5 seeds, 8 rounds x 16
    .venv/bin/python bench/campaigns.py --from-runs a/runs.json b/runs.json  # report saved runs
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/campaigns.py`

from bench.campaign_methods import (  # noqa: E402
    ABLATIONS, AX_MISSING, METHODS, MethodSettings, ax_available, make_method)
from bench.campaign_problems import PROBLEMS, Problem, load_problem, mean_pairwise_distance  # noqa: E402

RAW_METHODS = ("ax", "botorch-raw")
ALL = METHODS + ABLATIONS
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "campaigns"

#: tiltloop's own variants: compared with the baselines' rows, never counted as baselines
VARIANTS = ("tiltloop", "tiltloop-new", "tiltloop-auto", "tiltloop-predictive", "tiltloop-diverse")


@dataclass(frozen=True)
class RunResult:
    """One campaign of one method on one problem with one seed.

    Attributes:
        values: `rounds·q` true values in query order.
        on_support: `rounds·q` bools.
        diversity: per-round mean pairwise distance of the batch.
        gaps: (surrogate mean − true value) of every design a surrogate picked (may be empty).
        seconds: wall time of the whole campaign.
        families: per-round distinct ancestor families of the batch (NaN: no lineage).
    """

    problem: str
    method: str
    seed: int
    values: np.ndarray
    on_support: np.ndarray
    diversity: np.ndarray
    gaps: np.ndarray
    seconds: float
    families: np.ndarray | None = None

    @property
    def best_so_far(self) -> np.ndarray:
        return np.maximum.accumulate(self.values)

    @property
    def wasted_fraction(self) -> float:
        """Wasted batches over the rounds judged (all but the first)."""
        from optimizer.campaign.round_diagnostics import wasted_batches

        q = len(self.values) // max(1, len(self.diversity))
        wasted, judged, _ = wasted_batches(
            [(k, self.values[k * q:(k + 1) * q].tolist()) for k in range(len(self.diversity))])
        return wasted / judged if judged else float("nan")


def run_campaign(problem: Problem, method: str, seed: int, *, rounds: int, q: int,
                 settings: MethodSettings) -> RunResult:
    """Run ``rounds`` rounds of ``q`` queries of ``method`` on ``problem``; returns a ``RunResult``.

    >>> r = run_campaign(load_problem("gmm-toy"), "random", 0, rounds=2, q=4,
    ...                  settings=MethodSettings())
    >>> r.values.shape
    (8,)
    """
    t0 = time.perf_counter()
    m = make_method(method, problem, q, seed, settings)
    values, support, diversity, gaps, families = [], [], [], [], []
    for r in range(rounds):
        prop = m.ask(r)
        designs = prop.designs
        if tuple(designs.shape) != (q, *problem.design_shape):
            raise RuntimeError(f"{method} proposed shape {tuple(designs.shape)} in round {r}; "
                               f"expected {(q, *problem.design_shape)}")
        y = problem.value(designs)
        m.tell(designs, y)
        values.append(y.numpy())
        support.append(problem.on_support(designs).numpy())
        diversity.append(mean_pairwise_distance(designs))
        families.append(float("nan") if prop.families is None else float(prop.families))
        if prop.predicted is not None:
            gaps.append(np.asarray(prop.predicted, dtype=np.float64) - y.numpy())
    return RunResult(problem.name, method, seed, np.concatenate(values), np.concatenate(support),
                     np.asarray(diversity), np.concatenate(gaps) if gaps else np.zeros(0),
                     time.perf_counter() - t0, np.asarray(families))


def _mse(x: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in x if math.isfinite(v)], dtype=np.float64)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0


def _fmt(m: float, se: float, fixed: int | None = None) -> str:
    """`mean ± s.e.`: 4 significant digits (values span 1e-3 .. 1e2), or ``fixed`` decimals."""
    if not math.isfinite(m):
        return "n/a"
    return f"{m:.{fixed}f} ± {se:.{fixed}f}" if fixed is not None else f"{m:.4g} ± {se:.2g}"


def summarize(results: list[RunResult]) -> dict[tuple[str, str], dict[str, object]]:
    """Per (problem, method): mean ± s.e. over seeds of every figure, and the mean curve."""
    out: dict[tuple[str, str], dict[str, object]] = {}
    for key in sorted({(r.problem, r.method) for r in results}, key=lambda k: (k[0], ALL.index(k[1]))):
        rs = [r for r in results if (r.problem, r.method) == key]
        curves = np.stack([r.best_so_far for r in rs])
        out[key] = {
            "seeds": len(rs), "queries": curves.shape[1],
            "final": _mse([float(c[-1]) for c in curves]),
            "support": _mse([float(r.on_support.mean()) for r in rs]),
            "diversity": _mse([float(np.nanmean(r.diversity)) for r in rs]),
            "gap": _mse([float(r.gaps.mean()) if len(r.gaps) else float("nan") for r in rs]),
            "wasted": _mse([r.wasted_fraction for r in rs]),
            "families": _mse([float(np.nanmean(r.families)) if r.families is not None
                              and np.isfinite(r.families).any() else float("nan") for r in rs]),
            "seconds": _mse([r.seconds for r in rs]),
            "curve": curves.mean(0),
            "curve_se": (curves.std(0, ddof=1) / math.sqrt(len(rs)) if len(rs) > 1
                         else np.zeros(curves.shape[1])),
        }
    return out


def table(summary: dict, problems: dict[str, Problem]) -> str:
    """The markdown table (one block per problem, with its support rule)."""
    lines = []
    for name in dict.fromkeys(p for p, _ in summary):
        lines += [f"\n### {name}  (support: {problems[name].support.description}; "
                  f"known optimum: {problems[name].optimum})\n",
                  "| method | final best | on support | batch diversity | wasted batches "
                  "| families / batch | surrogate − oracle gap | s / campaign |",
                  "|---|---|---|---|---|---|---|---|"]
        for (p, m), s in summary.items():
            if p == name:
                lines.append(f"| {m} | {_fmt(*s['final'])} | {_fmt(*s['support'], 2)} | "
                             f"{_fmt(*s['diversity'])} | {_fmt(*s['wasted'], 2)} | "
                             f"{_fmt(*s['families'], 1)} | {_fmt(*s['gap'])} | "
                             f"{_fmt(*s['seconds'], 1)} |")
    return "\n".join(lines)


def goals(summary: dict) -> list[str]:
    """PASS/FAIL lines of the issue's three goals, per problem (printed, never asserted)."""
    lines = []
    for name in dict.fromkeys(p for p, _ in summary):
        tl = summary.get((name, "tiltloop"))
        if tl is None:
            lines.append(f"SKIP [{name}] tiltloop not run")
            continue
        base = {m: s for (p, m), s in summary.items()
                if p == name and m not in VARIANTS}  # (variants of tiltloop, not baselines)
        f_tl = tl["final"][0]
        beaten = [m for m, s in base.items() if not f_tl > s["final"][0]]
        lines.append(f"{'PASS' if not beaten else 'FAIL'} [{name}] tiltloop final best {f_tl:.4f} "
                     f"beats every baseline" + (f" (not: {', '.join(beaten)})" if beaten else ""))
        raw = {m: s for m, s in base.items() if m in RAW_METHODS}
        if raw:
            best_m = max(raw, key=lambda m: raw[m]["final"][0])
            target, n = raw[best_m]["final"][0], raw[best_m]["queries"]
            hit = np.flatnonzero(tl["curve"] >= target)
            used = int(hit[0]) + 1 if len(hit) else None
            ok = used is not None and used <= 0.5 * n
            when = f"after {used} queries" if used else f"never within {len(tl['curve'])} queries"
            lines.append(f"{'PASS' if ok else 'FAIL'} [{name}] tiltloop reaches {best_m}'s final "
                         f"{target:.4f} {when} (goal <= {0.5 * n:.0f} of its {n})")
        else:
            lines.append(f"SKIP [{name}] no raw-space optimizer run")
        frac = tl["support"][0]
        lines.append(f"{'PASS' if frac >= 0.95 else 'FAIL'} [{name}] tiltloop queries on support: "
                     f"{100 * frac:.1f}% (goal >= 95%)")
    return lines


def plot(summary: dict, out: Path) -> list[Path]:
    """Best-so-far vs queries (mean ± s.e.), one PNG per problem, under ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in dict.fromkeys(p for p, _ in summary):
        rows = {m: s for (p, m), s in summary.items() if p == name}
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax in axes:
            for m, s in rows.items():
                x = np.arange(1, len(s["curve"]) + 1)
                c = f"C{ALL.index(m)}"  # one color per method in every plot
                ax.plot(x, s["curve"], label=m, color=c, lw=2.2 if m == "tiltloop" else 1.3)
                ax.fill_between(x, s["curve"] - s["curve_se"], s["curve"] + s["curve_se"],
                                color=c, alpha=0.15)
            ax.set(xlabel="oracle queries", ylabel="best true value so far")
            ax.grid(alpha=0.3)
        # right panel: zoom on the better half of the methods (raw-space outliers leave the frame)
        finals = sorted(s["final"][0] for s in rows.values())
        top = [s for s in rows.values() if s["final"][0] >= finals[len(finals) // 2]]
        quarter = len(next(iter(top))["curve"]) // 4  # from the end of the first quarter
        lo = min(float(s["curve"][quarter]) for s in top)
        hi = max(float(s["curve"].max()) for s in top)
        axes[1].set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
        axes[0].set_title(f"{name}: best-so-far (mean ± s.e., {s['seeds']} seeds)")
        axes[1].set_title("zoom: the better half of the methods")
        axes[0].legend(fontsize=8)
        path = out / f"{name}_best_so_far.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def save_runs(path: Path, args: argparse.Namespace, settings: MethodSettings,
              results: list[RunResult], *, complete: bool) -> None:
    """Every finished run as JSON (rewritten after each run, so an interrupted benchmark keeps
    what it measured; ``complete`` is False until the last run)."""
    rows = [{"problem": r.problem, "method": r.method, "seed": r.seed, "values": r.values.tolist(),
             "on_support": r.on_support.tolist(), "diversity": r.diversity.tolist(),
             "gaps": r.gaps.tolist(), "seconds": r.seconds,
             "families": None if r.families is None else
             [None if not math.isfinite(f) else f for f in r.families.tolist()]} for r in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"complete": complete, "args": {k: str(v) for k, v in vars(args).items()},
                                "settings": settings.model_dump(), "runs": rows}))


def load_runs(path: Path) -> list[RunResult]:
    """The runs saved by ``save_runs`` (a complete or an interrupted benchmark)."""
    try:
        rows = json.loads(Path(path).read_text())["runs"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--from-runs {path}: not a runs.json written by this script ({exc})") from exc
    return [RunResult(r["problem"], r["method"], int(r["seed"]), np.asarray(r["values"], dtype=float),
                      np.asarray(r["on_support"], dtype=bool), np.asarray(r["diversity"], dtype=float),
                      np.asarray(r["gaps"], dtype=float), float(r["seconds"]),
                      None if r.get("families") is None else
                      np.asarray([np.nan if f is None else f for f in r["families"]], dtype=float))
            for r in rows]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="rounds per campaign (default 8; quick 4)")
    ap.add_argument("--q", type=int, default=None, help="queries per round (default 16; quick 8)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 0..n-1 (default 5; quick 2)")
    ap.add_argument("--problems", default="manifold,digits", help=f"comma list of {', '.join(PROBLEMS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of methods")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for plots and the table")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 4 rounds x 8 queries")
    ap.add_argument("--particles", type=int, default=256, help="SMC particles per round")
    ap.add_argument("--steps", type=int, default=30, help="DAS / prior sampling steps")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--from-runs", type=Path, nargs="+", default=None, metavar="RUNS_JSON",
                    help="no new runs: table, goals and plots from saved runs.json files "
                         "(several: e.g. one per problem, run in parallel processes)")
    args = ap.parse_args(argv)
    quick = (4, 8, 2) if args.quick else (8, 16, 5)
    args.rounds = args.rounds or quick[0]
    args.q = args.q or quick[1]
    args.seeds = args.seeds or quick[2]
    for flag in ("rounds", "q", "seeds"):
        if getattr(args, flag) < 1 or (flag == "q" and args.q < 2):
            ap.error(f"--{flag} must be >= {2 if flag == 'q' else 1}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ALL:
            raise SystemExit(f"--methods: unknown method {m!r}; choose from {', '.join(ALL)}")
    if "ax" in methods and not ax_available():
        print(AX_MISSING)
        methods.remove("ax")
    settings = MethodSettings(num_particles=args.particles, num_steps=args.steps)
    if args.from_runs is not None:
        results = [r for path in args.from_runs for r in load_runs(path)]
        seen = [(r.problem, r.method, r.seed) for r in results]
        if len(set(seen)) != len(seen):
            raise SystemExit("--from-runs: the files hold the same (problem, method, seed) twice")
        report({p: load_problem(p) for p in dict.fromkeys(r.problem for r in results)}, results, args)
        return 0
    print(f"# campaigns: {args.rounds} rounds x {args.q} queries, {args.seeds} seeds, "
          f"problems {problems}, methods {methods}, {settings!r}, load {os.getloadavg()[0]:.1f}")
    loaded = {p: load_problem(p) for p in problems}
    results = []
    for p in problems:
        for seed in range(args.seeds):
            for m in methods:
                r = run_campaign(loaded[p], m, seed, rounds=args.rounds, q=args.q, settings=settings)
                results.append(r)
                save_runs(args.out / "runs.json", args, settings, results, complete=False)
                print(f"  {p:9s} seed {seed} {m:15s} best {r.best_so_far[-1]: .4f}  support "
                      f"{r.on_support.mean():.2f}  {r.seconds:6.1f} s", flush=True)
    save_runs(args.out / "runs.json", args, settings, results, complete=True)
    report(loaded, results, args)
    return 0


def report(loaded: dict[str, Problem], results: list[RunResult], args: argparse.Namespace) -> None:
    """Print the table, the definitions and the goal lines; write table.md and the plots."""
    summary = summarize(results)
    text = table(summary, loaded)
    print(text)
    print("\nDefinitions: support = the problem's rule above, over all queried designs; diversity = "
          "mean pairwise Euclidean distance within each batch (design space), averaged over rounds; "
          "gap = mean(surrogate posterior mean - true value) over the designs a method's own GP "
          "picked (rounds >= 1), > 0 = over-optimistic; wasted = fraction of rounds >= 1 whose every "
          "result is below the running median of the earlier results; families = distinct SMC "
          "founders per batch (n/a: no lineage).\n")
    lines = goals(summary)
    print("\n".join(lines))
    paths = plot(summary, args.out)
    (args.out / "table.md").write_text(text + "\n\n" + "\n".join(lines) + "\n")
    print(f"\nplots: {', '.join(str(x) for x in paths)}; table: {args.out / 'table.md'}; "
          f"every run: {args.out / 'runs.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
