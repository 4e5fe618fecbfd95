"""Particle collapse of DAS on the digits prior (issue 15): today's defaults vs new settings.

Reward: the bundled digits classifier's `log p(target | x)` on the decoded image, as a black box
(``differentiable = False``: gradient-free DAS) and, for the guided rows, with its gradient.
Per setting, averaged over groups and seeds, side by side (the settings interleave per seed):

* ``minESS``: the smallest ESS fraction over the steps (issue 15's goal: >= 0.2);
* ``resamp``: resampling events per group; ``acc``: mean acceptance of the rejuvenation moves;
* ``founders``: distinct initial particles (``origin``) the final population descends from;
* ``eff_fnd``: effective number of founders, `exp(entropy)` of the weight mass per founder;
* ``dist/prior``: `Σ_ij W_i W_j |x_i - x_j|` of the final weighted population (the mean
  distance of two draws) over the same for plain prior samples of the same seed;
* ``reward``: weighted mean `log p(target | x)`; ``ess_end``: final ESS fraction;
* ``wall``/``cpu``: seconds of the run (process CPU time), and the load before and after.

    PYTHONPATH=$PWD .venv/bin/python bench/das_diversity.py                 # 3 seeds
    PYTHONPATH=$PWD .venv/bin/python bench/das_diversity.py --seeds 2 --no-guided
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/...`

from optimizer.das import sample  # noqa: E402
from optimizer.priors.digits_embedding import DigitClassifier  # noqa: E402
from optimizer.priors.registry import BUNDLED, load_prior  # noqa: E402
from optimizer.smc import AdaptiveTempering, PolynomialTempering  # noqa: E402
from optimizer.workers.components import zero_reward  # noqa: E402

#: (label, guided, DAS options); the first of each mode is today's default.
SETTINGS: list[tuple[str, bool, dict[str, Any]]] = [
    ("old: adaptive", False, {}),
    ("predictive", False, {"tempering": "predictive"}),
    # ablation: predictive's cap (k/K)^3 and floor (k/K)^4 without its variance prediction
    ("adaptive cubic-cap", False, {"tempering": "cubic-cap"}),
    ("adaptive + mh", False, {"rejuvenation": "mh"}),
    ("predictive + mh", False, {"tempering": "predictive", "rejuvenation": "mh"}),
    ("predictive + mh x2 b=1", False, {"tempering": "predictive", "rejuvenation": "mh",
                                       "rejuvenation_steps": 2, "rejuvenation_step": 1.0}),
    ("old guided: adaptive", True, {}),
    ("guided predictive + mh", True, {"tempering": "predictive", "rejuvenation": "mh"}),
    ("guided predictive + mala", True, {"tempering": "predictive", "rejuvenation": "mala"}),
]


class ClassifierReward:
    """`log p(target | x)` of the bundled digits classifier, for `B x 1 x 8 x 8` images."""

    def __init__(self, target: int, differentiable: bool) -> None:
        self.net = DigitClassifier.from_pretrained(BUNDLED["digits"].path / "classifier")
        self.target = target
        self.differentiable = differentiable

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(x), dim=-1)[:, self.target]


def mean_distance(x: torch.Tensor, w: torch.Tensor) -> float:
    """`Σ_ij W_i W_j |x_i - x_j|` per group (`G x P x ...`, `G x P`), averaged over groups."""
    flat = x.reshape(*x.shape[:2], -1).double()
    d = torch.cdist(flat, flat)
    return float(torch.einsum("gi,gij,gj->g", w.double(), d, w.double()).mean())


def run_one(prior: Any, reward: ClassifierReward, opts: dict[str, Any], args: argparse.Namespace,
            seed: int) -> dict[str, float]:
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    if opts.get("tempering") == "cubic-cap":
        opts = {**opts, "tempering": AdaptiveTempering(cap=PolynomialTempering(power=3.0),
                                                       floor=PolynomialTempering(power=4.0))}
    wall, cpu = time.perf_counter(), time.process_time()
    res = sample(prior, reward, num_particles=args.particles, alpha=args.alpha,
                 num_steps=args.steps, conditions=[None] * args.groups, generator=gen,
                 guidance="gradient" if reward.differentiable else "none", **opts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    P = args.particles
    mass = torch.zeros(args.groups, P, dtype=torch.float64).scatter_add_(
        1, res.origin, res.weights.double())  # weight mass per founder
    eff_founders = torch.exp(-(mass * torch.log(mass.clamp_min(1e-300))).sum(-1))
    resampled = res.resampled.double()
    acc = res.accept_rate
    return {
        "minESS": float((res.ess / P).min(0).values.mean()),
        "resamp": float(resampled.sum(0).mean()),
        "acc": float(acc.sum() / resampled.sum().clamp_min(1)) if acc is not None else 0.0,
        "founders": float(sum(len(set(o.tolist())) for o in res.origin) / args.groups),
        "eff_fnd": float(eff_founders.mean()),
        "dist": mean_distance(res.samples, res.weights),
        "reward": float((res.weights * res.rewards).sum(-1).mean()),
        "ess_end": float((res.ess[-1] / P).mean()),
        "wall": wall, "cpu": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--particles", type=int, default=128, help="P per group")
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--digit", type=int, default=3, help="the target class")
    ap.add_argument("--no-guided", action="store_true", help="skip the guided settings")
    ap.add_argument("--only", default="", help="comma list of setting labels to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions: one thread is fastest on a shared CPU
    prior = load_prior("digits")
    rewards = {False: ClassifierReward(args.digit, False), True: ClassifierReward(args.digit, True)}
    settings = [s for s in SETTINGS if not (args.no_guided and s[1])]
    if args.only:
        keep = set(args.only.split(","))
        settings = [s for s in settings if s[0] in keep]
    print(f"digits prior, log p({args.digit}|x), alpha={args.alpha}, {args.groups} x "
          f"{args.particles} particles, {args.steps} steps, {args.seeds} seeds; "
          f"load before: {os.getloadavg()[0]:.2f}")
    rows: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in settings}
    for seed in range(args.seeds):
        gen = torch.Generator(device=prior.device).manual_seed(10_000 + seed)
        plain = sample(prior, zero_reward, num_particles=args.particles, alpha=1.0,
                       num_steps=args.steps, conditions=[None] * args.groups,
                       guidance="none", generator=gen)
        prior_dist = mean_distance(plain.samples, plain.weights)
        for label, guided, opts in settings:  # interleaved: every setting once per seed
            r = run_one(prior, rewards[guided], opts, args, seed)
            r["dist"] /= prior_dist
            rows[label].append(r)
            print(f"  seed {seed} {label:26s} " + " ".join(f"{k} {v:.3f}" for k, v in r.items()),
                  flush=True)
    keys = ["minESS", "resamp", "acc", "founders", "eff_fnd", "dist", "reward", "ess_end",
            "wall", "cpu"]
    print(f"\nmeans over seeds (load after: {os.getloadavg()[0]:.2f})")
    print(f"{'setting':28s}" + "".join(f"{k if k != 'dist' else 'dist/prior':>11s}"
                                        for k in keys))
    for label, rs in rows.items():
        print(f"{label:28s}" + "".join(f"{sum(r[k] for r in rs) / len(rs):11.3f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
