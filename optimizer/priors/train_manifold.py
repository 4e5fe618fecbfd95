r"""Train the bundled ``manifold`` prior: an ``MLPDiffusionPrior`` on historical manifold designs.

    python -m optimizer.priors.train_manifold [--out DIR] [--seed N] [--steps N] [--num-designs N]

Data: ``oracles.simulated.manifold.ManifoldProblem()`` (`d = 16`, 6-dim manifold, noise
σ = 0.02) draws ``--num-designs`` historical designs `f(u) + σ ξ` with a generator seeded by
``--seed``. Steps:

1. standardize the designs per dimension (`μ`, `s` stored with the prior: ``decode`` undoes it);
2. minimize the DDPM loss `E_{t, ε} ||ε - ε_θ(√ā_t x_0 + √(1-ā_t) ε, t)||²` with AdamW,
   cosine learning-rate decay, and an EMA of the weights (the EMA is saved);
3. ``save_pretrained`` into ``OUT`` (``config.json``, ``model.safetensors``) and write
   ``OUT/training.json`` (seed, settings, problem parameters, losses, wall time).

The script pins torch to one thread, so a rerun with the same torch build reproduces the weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from optimizer.priors.mlp import EpsilonMLP, MLPDiffusionConfig, MLPDiffusionPrior
from optimizer.threads import torch_threads

DEFAULT_OUT = Path(__file__).parent / "bundled" / "manifold"


def train_mlp_prior(
    designs: Tensor,
    config: MLPDiffusionConfig,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 2e-3,
    ema_decay: float = 0.998,
    seed: int = 0,
    log_every: int = 0,
    num_threads: int | None = 1,
) -> tuple[MLPDiffusionPrior, list[float]]:
    """Fit an ``MLPDiffusionPrior`` to `N x d` designs with the DDPM `ε` loss.

    Returns the prior (EMA weights, frozen) and the loss of every step. ``num_threads``: torch
    intra-op threads while training (default 1, see ``optimizer.threads.torch_threads``).

    >>> prior, losses = train_mlp_prior(x, MLPDiffusionConfig(dim=16), steps=500)
    """
    if designs.dim() != 2 or designs.shape[1] != config.dim:
        raise ValueError(f"designs have shape {tuple(designs.shape)}; expected N x {config.dim}")
    with torch_threads(num_threads):
        return _train(designs, config, steps=steps, batch_size=batch_size, lr=lr,
                      ema_decay=ema_decay, seed=seed, log_every=log_every)


def _train(designs: Tensor, config: MLPDiffusionConfig, *, steps: int, batch_size: int,
           lr: float, ema_decay: float, seed: int, log_every: int
           ) -> tuple[MLPDiffusionPrior, list[float]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    designs = designs.to(torch.float32)
    mean, std = designs.mean(0), designs.std(0).clamp_min(1e-6)
    x = (designs - mean) / std
    net, ema = EpsilonMLP(config), EpsilonMLP(config)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    prior = MLPDiffusionPrior(config, ema, data_mean=mean, data_std=std)
    abar = prior.alphas_cumprod.float()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    losses = []
    for step in range(steps):
        x0 = x[torch.randint(len(x), (batch_size,), generator=gen)]
        t = torch.randint(0, len(abar), (batch_size,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].unsqueeze(1)
        loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t), eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(f"step {step:5d}  loss {recent:.4f}", flush=True)
    ema.eval()
    return prior, losses


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    from oracles.simulated.manifold import ManifoldProblem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--num-designs", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    problem = ManifoldProblem()
    designs = problem.sample_historical(args.num_designs, torch.Generator().manual_seed(args.seed))
    config = MLPDiffusionConfig(dim=problem.dim, hidden=256, num_blocks=3)
    t0 = time.perf_counter()
    prior, losses = train_mlp_prior(designs, config, steps=args.steps, batch_size=args.batch_size,
                                    seed=args.seed, log_every=500)
    wall = time.perf_counter() - t0
    prior.save_pretrained(args.out)
    dist = problem.distance(designs)
    meta = dict(
        command=f"python -m optimizer.priors.train_manifold --seed {args.seed} --steps {args.steps} "
        f"--num-designs {args.num_designs} --batch-size {args.batch_size}",
        seed=args.seed,
        problem={k: v for k, v in dataclasses.asdict(problem).items() if not k.startswith("_")},
        data="ManifoldProblem().sample_historical(num_designs, torch.Generator().manual_seed(seed))",
        design_space=f"R^{problem.dim}; the prior's decode(x0) = data_mean + data_std * x0",
        historical_distance_mean=round(dist.mean().item(), 5),
        historical_on_support_fraction=round(problem.on_support(designs).double().mean().item(), 4),
        steps=args.steps,
        batch_size=args.batch_size,
        optimizer="AdamW lr=2e-3, cosine decay to 2%, grad-norm clip 1.0, EMA 0.998",
        final_loss_mean_last_200=round(sum(losses[-200:]) / len(losses[-200:]), 5),
        num_parameters=sum(p.numel() for p in prior.net.parameters()),
        torch_version=torch.__version__,
        torch_threads=1,
        wall_seconds=round(wall, 1),
    )
    (args.out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
