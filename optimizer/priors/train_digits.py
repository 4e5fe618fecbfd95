r"""Train the bundled ``digits`` prior and its frozen classifier on scikit-learn's 8x8 digits.

    python -m optimizer.priors.train_digits [--out DIR] [--seed N] [--epochs N] [--part all]

Data: ``sklearn.datasets.load_digits`` (1797 images, bundled with scikit-learn, no download).
Diffusion space = design space = images scaled to `[-1, 1]`: `x = pixels / 8 - 1`, so
`pixels = 8 (x + 1)` recovers sklearn's 0..16 range.

Steps:

1. ``--part prior``: a diffusers ``UNet2DModel`` (1 channel, 8x8, `ε`-prediction) trained with
   the DDPM loss `E_{t, ε} ||ε - ε_θ(√ā_t x_0 + √(1-ā_t) ε, t)||²` under a ``DDPMScheduler``
   (linear betas 1e-4..0.02, 1000 steps), AdamW with cosine learning-rate decay and an EMA of the
   weights (the EMA is what is saved). Written with ``save_pretrained`` into ``OUT/unet`` and
   ``OUT/scheduler``.
2. ``--part classifier``: ``DigitClassifier`` (see ``digits_embedding.py``) trained with
   cross-entropy on the real digits plus outlier exposure (uniform target on synthetic
   non-digits); written into ``OUT/classifier``. A stratified 20% split is held out to report
   its accuracy; the saved network is the one trained on the 80% split.
3. ``OUT/training.json`` records seed, settings, data scaling, versions, losses and wall times.

Epochs: 1800 (27,000 steps). Longer training is what made the samples clean digits: with 360
epochs 77% of samples got the classifier's confidence ≥ 0.9, with 900 87%, with 1800 91% (real
held-out digits: 95%); ``--epochs N --out DIR`` then ``bench/digits_prior_quality.py DIR``
measures any of them.

Reproducibility: one seed drives every generator and the script pins torch to one thread, so a
rerun on the same torch build reproduces the committed weights (different CPU kernels or torch
versions may differ in the last float bits).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from optimizer.priors.digits_embedding import DigitClassifier

DEFAULT_OUT = Path(__file__).parent / "bundled" / "digits"

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    layers_per_block=1,
    block_out_channels=(32, 32),
    down_block_types=("DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    add_attention=False,  # 8x8 digits need no attention; without it a step costs ~0.1 CPU-s
)
EMA_DECAY = 0.999
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    # linear, not squaredcos_cap_v2: the cosine schedule's capped last beta leaves
    # ā_{T-1} ≈ 1e-9, and Tweedie's x̂0 = (x - √(1-ā)ε̂)/√ā at the first DDIM step then
    # amplifies ε̂'s error ~3e4-fold (samples explode unless clipped, and DAS does not clip).
    beta_schedule="linear",
    beta_start=1e-4,
    beta_end=0.02,
    prediction_type="epsilon",
    clip_sample=True,
    clip_sample_range=1.0,
)


def load_digit_data() -> tuple[Tensor, Tensor]:
    """``(images, labels)``: `1797 x 1 x 8 x 8` float32 in `[-1, 1]` and `1797` int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return x, y


def stratified_split(y: Tensor, frac: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices ``(train, held_out)`` with ``frac`` of each class held out."""
    train, held = [], []
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = int(round(frac * len(idx)))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train), torch.cat(held)


def synthetic_non_digits(x: Tensor, y: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """`n x 1 x 8 x 8` non-digits: uniform noise, pixel-shuffled digits, blends of two classes."""
    k = n // 3
    noise = torch.rand(k, 1, 8, 8, generator=gen) * 2 - 1
    src = x[torch.randint(len(x), (k,), generator=gen)].reshape(k, 64)
    perm = torch.argsort(torch.rand(k, 64, generator=gen), dim=1)
    shuffled = torch.gather(src, 1, perm).reshape(k, 1, 8, 8)
    m = n - 2 * k
    i = torch.randint(len(x), (m,), generator=gen)
    j = torch.randint(len(x), (m,), generator=gen)
    j = torch.where(y[i] == y[j], (j + 1) % len(x), j)  # different class (almost always)
    w = 0.35 + 0.3 * torch.rand(m, 1, 1, 1, generator=gen)
    blends = w * x[i] + (1 - w) * x[j]
    return torch.cat([noise, shuffled, blends])


def train_classifier(x: Tensor, y: Tensor, *, seed: int, epochs: int) -> tuple[DigitClassifier, dict]:
    """Train ``DigitClassifier`` with outlier exposure; return it and its report."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tr, ho = stratified_split(y, 0.2, gen)
    net = DigitClassifier(embed_dim=32)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 64
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=gen)]
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            xb, yb = x[idx], y[idx]
            # Real digits with a little pixel noise, so samples' small artefacts are tolerated.
            xb = (xb + 0.05 * torch.randn(xb.shape, generator=gen)).clamp(-1, 1)
            xo = synthetic_non_digits(x[tr], y[tr], len(idx), gen)
            loss_in = F.cross_entropy(net(xb), yb)
            # Outlier exposure: cross-entropy to the uniform distribution over 10 classes.
            loss_out = -net(xo).log_softmax(dim=-1).mean()
            loss = loss_in + 0.5 * loss_out
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x[ho]).argmax(-1) == y[ho]).float().mean().item()
        conf_ho, _ = net.confidence(x[ho])
        conf_out, _ = net.confidence(synthetic_non_digits(x[ho], y[ho], 600, gen))
    report = dict(
        epochs=epochs,
        embed_dim=32,
        held_out_fraction=0.2,
        held_out_accuracy=round(acc, 4),
        held_out_confident_fraction_at_0_9=round((conf_ho >= 0.9).float().mean().item(), 4),
        synthetic_non_digit_confident_fraction_at_0_9=round((conf_out >= 0.9).float().mean().item(), 4),
    )
    return net, report


def train_prior(x: Tensor, *, seed: int, epochs: int, batch: int = 128) -> tuple[Any, Any, dict]:
    """Train the ``UNet2DModel`` with the DDPM loss; return (EMA unet, scheduler, report)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    unet = UNet2DModel(**UNET_CONFIG)
    ema = UNet2DModel(**UNET_CONFIG)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    sched = DDPMScheduler(**SCHEDULER_CONFIG)
    abar = sched.alphas_cumprod.float()
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, weight_decay=0.0)
    lr_at = lambda s: 0.5 * (1 + math.cos(math.pi * s / total)) * 0.98 + 0.02  # noqa: E731
    sched_lr = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    step, losses = 0, []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        epoch_loss = 0.0
        for s in range(0, len(x), batch):
            x0 = x[order[s : s + batch]]
            t = torch.randint(0, len(abar), (len(x0),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            a = abar[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            loss = F.mse_loss(unet(xt, t).sample, eps)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            sched_lr.step()
            step += 1
            decay = min(EMA_DECAY, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters()):
                    pe.lerp_(p, 1 - decay)
            epoch_loss += loss.item() * len(x0)
        losses.append(epoch_loss / len(x))
        if epoch % 10 == 0 or epoch == epochs - 1:
            print(f"prior epoch {epoch:4d}  loss {losses[-1]:.4f}", flush=True)
    report = dict(
        epochs=epochs,
        batch_size=batch,
        optimizer="AdamW lr=2e-3, cosine decay to 2%, grad-norm clip 1.0",
        ema_decay=EMA_DECAY,
        steps=step,
        final_epoch_loss=round(losses[-1], 5),
        num_parameters=sum(p.numel() for p in ema.parameters()),
    )
    return ema, sched, report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1800, help="prior training epochs")
    parser.add_argument("--classifier-epochs", type=int, default=40)
    parser.add_argument("--part", choices=["all", "prior", "classifier"], default="all")
    args = parser.parse_args(argv)

    import diffusers

    torch.set_num_threads(1)
    x, y = load_digit_data()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    meta_file = out / "training.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    meta.update(
        command=f"python -m optimizer.priors.train_digits --seed {args.seed} --epochs {args.epochs} "
        f"--classifier-epochs {args.classifier_epochs}",
        seed=args.seed,
        data="sklearn.datasets.load_digits(): 1797 images 8x8, labels 0..9",
        design_space="B x 1 x 8 x 8 images in [-1, 1]; x = pixels / 8 - 1, pixels = 8 * (x + 1) in 0..16",
        torch_version=torch.__version__,
        diffusers_version=diffusers.__version__,
        torch_threads=1,
    )
    if args.part in ("all", "classifier"):
        t0 = time.perf_counter()
        net, rep = train_classifier(x, y, seed=args.seed, epochs=args.classifier_epochs)
        rep["wall_seconds"] = round(time.perf_counter() - t0, 1)
        net.save_pretrained(out / "classifier")
        meta["classifier"] = rep
        print("classifier:", rep, flush=True)
    if args.part in ("all", "prior"):
        t0 = time.perf_counter()
        unet, sched, rep = train_prior(x, seed=args.seed, epochs=args.epochs)
        rep["wall_seconds"] = round(time.perf_counter() - t0, 1)
        rep["unet_config"] = UNET_CONFIG
        rep["scheduler_config"] = SCHEDULER_CONFIG
        unet.save_pretrained(out / "unet")  # safetensors by default
        sched.save_pretrained(out / "scheduler")
        meta["prior"] = rep
        print("prior:", {k: v for k, v in rep.items() if not k.endswith("config")}, flush=True)
    meta_file.write_text(json.dumps(meta, indent=2, default=list) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
