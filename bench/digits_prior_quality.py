"""Quality of a digits prior: how many of its plain samples the bundled classifier recognizes.

For each prior folder (default: the bundled ``digits`` prior; any folder written by
``python -m optimizer.priors.train_digits --out DIR``) and each number of sampling steps, prints
the fraction of plain samples (DAS with a zero reward) whose classifier confidence (max softmax)
is ≥ 0.9 and ≥ 0.5, and the total variation between the samples' class histogram and the data's.
The same figures for held-out real digits are printed as the reference.

    .venv/bin/python bench/digits_prior_quality.py                       # bundled prior
    .venv/bin/python bench/digits_prior_quality.py /tmp/d900 --steps 30,50,100
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/...`

from optimizer.das import sample  # noqa: E402
from optimizer.priors.digits_embedding import DigitClassifier  # noqa: E402
from optimizer.priors.registry import BUNDLED, load_prior  # noqa: E402
from optimizer.priors.train_digits import load_digit_data, stratified_split  # noqa: E402
from optimizer.workers.components import zero_reward  # noqa: E402


def plain_samples(prior, num: int, steps: int, seed: int) -> torch.Tensor:
    """`num` plain prior samples (zero reward: uniform weights, no resampling)."""
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    return sample(prior, zero_reward, num_particles=num, alpha=1.0, num_steps=steps,
                  guidance="none", generator=gen).samples.cpu().float()


def figures(classifier: DigitClassifier, images: torch.Tensor, labels_data: torch.Tensor) -> str:
    conf, label = classifier.confidence(images)
    p = torch.bincount(label, minlength=10).double() / len(label)
    q = torch.bincount(labels_data, minlength=10).double() / len(labels_data)
    return (f"conf>=0.9 {(conf >= 0.9).double().mean():.3f}  conf>=0.5 "
            f"{(conf >= 0.5).double().mean():.3f}  class TV {0.5 * float((p - q).abs().sum()):.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("priors", nargs="*", help="prior folders (default: the bundled digits prior)")
    ap.add_argument("--steps", default="50", help="comma list of sampling steps")
    ap.add_argument("--samples", type=int, default=256, help="samples per seed")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small convolutions: one thread is fastest on a shared CPU
    classifier = DigitClassifier.from_pretrained(BUNDLED["digits"].path / "classifier")
    x, y = load_digit_data()
    _, held = stratified_split(y, 0.2, torch.Generator().manual_seed(0))  # as the classifier's
    print(f"real held-out digits ({len(held)}):  {figures(classifier, x[held], y)}")
    for name in args.priors or ["digits"]:
        prior = load_prior(name)
        for steps in (int(s) for s in args.steps.split(",")):
            s = torch.cat([plain_samples(prior, args.samples, steps, seed)
                           for seed in range(args.seeds)])
            print(f"{name}  {steps} steps, {len(s)} samples:  {figures(classifier, s, y)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
