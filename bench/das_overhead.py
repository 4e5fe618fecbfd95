"""What the DAS machinery costs on top of plain diffusion sampling (prints figures, no asserts).

    .venv/bin/python bench/das_overhead.py                     # CPU, 16x16 UNet, 50 steps
    .venv/bin/python bench/das_overhead.py --device cuda --steps 100 --repeats 5
    .venv/bin/python bench/das_overhead.py --prior latent      # tiny SD-layout latent prior

Prior: a small real diffusers ``UNet2DModel`` (random init, 3 x 16 x 16, block_out_channels
(32, 64)) with a DDPM schedule, through ``optimizer.priors.diffusers_pixel.PixelDiffusersPrior``.
Reward: a cheap differentiable image score, so the figures measure the sampler, not the reward.

1. Overhead ratio: DAS in gradient-free mode vs plain batched ancestral sampling (the same DDIM
   η=1 timesteps, prior, particles and steps), timed side by side, interleaved, median of
   ``--repeats``. Goal: <= 1.10x.
2. Guided DAS vs the bare cost of one prior forward + backward per step (ancestral sampling
   that back-propagates a reward through the UNet every step), for P = 16 and 64.
3. Peak memory of each mode: on CUDA ``torch.cuda.max_memory_allocated`` above the model; on
   CPU the growth of the peak resident set over the RSS after building the model, each
   configuration in a fresh subprocess (coarse: includes one-time allocator and library
   allocations, so compare modes with each other, not with tensor sizes).

``--prior latent``: the tiny Stable-Diffusion-layout prior of the tests (``UNet2DConditionModel``
latent 4 x 8 x 8, ``AutoencoderKL`` to 3 x 16 x 16, CLIP text encoder, classifier-free guidance)
instead; it prints, per P, every DAS mode over plain batched DDIM η=1 with the same prompts and
steps: gradient-free with the ramp reward, zero reward ("zero-before": without
``constant_value``, so the sampler decodes `x̂0` and calls the reward every step, as before the
flag existed; "zero-after": flagged ``constant_value = 0.0``, as
``optimizer.workers.components.zero_reward``), and guided with ``guidance="gradient"`` (backward
through UNet and decoder every step) and ``guidance="tweedie"`` (backward through the decoder
only). Wall and process CPU seconds, medians, modes interleaved, load before and after; the ESS
(min, mean, final over the steps) of the two guided modes on the same reward and seeds; and a
per-component profile of one run per mode (UNet forward, VAE decode forward, reward forward,
and the rest: backward passes and the sampler's own work).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizer.das import sample  # noqa: E402
from optimizer.das.schedule import DDIMSchedule, ScheduleConfig  # noqa: E402


def make_prior(device: str):
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.utils import logging as diffusers_logging

    from optimizer.priors.diffusers_pixel import PixelDiffusersPrior

    diffusers_logging.set_verbosity_error()
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(32, 64), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    return PixelDiffusersPrior(unet, DDPMScheduler(num_train_timesteps=1000), device=device)


def make_reward(device: str):
    target = torch.linspace(-1, 1, 16, device=device).expand(3, 16, 16)

    def reward(x: torch.Tensor) -> torch.Tensor:  # higher when close to a horizontal ramp
        return -((x - target) ** 2).mean(dim=(1, 2, 3))

    return reward


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ancestral(prior, reward, P: int, steps: int, seed: int, backward: bool) -> torch.Tensor:
    """Plain batched DDIM η=1 sampling; with ``backward`` it also back-propagates the reward of
    `x̂0` through the prior every step (the guided-mode floor: one forward + backward)."""
    sched = DDIMSchedule(prior.alphas_cumprod, ScheduleConfig(num_steps=steps))
    g = torch.Generator(device=prior.device).manual_seed(seed)
    x = torch.randn((P, *prior.latent_shape), generator=g, device=prior.device)
    for k, t in enumerate(sched.timesteps):
        a = sched.alpha_bar[k]
        if backward:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                eps = prior.predict_noise(xg, t)
                x0 = (xg - math.sqrt(1 - a) * eps) / math.sqrt(a)
                (grad,) = torch.autograd.grad(reward(prior.decode(x0)).sum(), xg)
            eps, x0 = eps.detach(), x0.detach() + 0 * grad
        else:
            with torch.no_grad():
                eps = prior.predict_noise(x, t)
                x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = sched.transition_mean(k, x0, eps)
        if sched.sigmas[k] > 0:
            x = x + sched.sigmas[k] * torch.randn(x.shape, generator=g, device=x.device)
    with torch.no_grad():
        return reward(prior.decode(x))


def run_das(prior, reward, P: int, steps: int, seed: int, guidance: str):
    g = torch.Generator(device=prior.device).manual_seed(seed)
    return sample(prior, reward, num_particles=P, alpha=0.01, num_steps=steps,
                  guidance=guidance, generator=g)


def run_one(mode: str, prior, reward, P: int, steps: int, seed: int):
    if mode == "ancestral":
        return ancestral(prior, reward, P, steps, seed, backward=False)
    if mode == "ancestral+backward":
        return ancestral(prior, reward, P, steps, seed, backward=True)
    return run_das(prior, reward, P, steps, seed, "none" if mode == "das-free" else "gradient")


MODES = ("ancestral", "das-free", "ancestral+backward", "das-guided")


def timings(device: str, P: int, steps: int, repeats: int) -> dict[str, float]:
    prior, reward = make_prior(device), make_reward(device)
    for mode in MODES:  # warm-up: allocator, kernels, caches
        run_one(mode, prior, reward, P, 3, seed=0)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(repeats):  # interleaved, so load changes hit every mode alike
        for mode in MODES:
            _sync(device)
            t0 = time.perf_counter()
            run_one(mode, prior, reward, P, steps, seed=r)
            _sync(device)
            times[mode].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_child(device: str, mode: str, P: int, steps: int) -> int:
    """Peak memory of one run in this (fresh) process, in bytes."""
    prior, reward = make_prior(device), make_reward(device)
    if device.startswith("cuda"):
        run_one(mode, prior, reward, P, 2, seed=0)  # warm, so workspaces are not counted
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_one(mode, prior, reward, P, steps, seed=0)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # No warm-up on CPU: the allocator keeps freed memory, so a warm-up would hide the peak.
    base = _rss_bytes()
    run_one(mode, prior, reward, P, steps, seed=0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def peak_memory(device: str, mode: str, P: int, steps: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--device", device, "--steps", str(steps),
         "--threads", str(torch.get_num_threads()), "--_memory-child",
         json.dumps({"mode": mode, "P": P})], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def make_latent_prior(device: str, tmp: Path):
    from diffusers.utils import logging as diffusers_logging

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "optimizer" / "priors"))
    from diffusers_dummies import dummy_latent_components, dummy_scheduler

    from optimizer.priors.diffusers_latent import LatentDiffusersPrior

    diffusers_logging.set_verbosity_error()
    parts = dummy_latent_components(tokenizer_dir=tmp / "tokenizer")
    return LatentDiffusersPrior(**parts, scheduler=dummy_scheduler(), guidance_scale=3.0,
                                device=device)


def zero_reward(flagged: bool):
    def zero(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    zero.differentiable = False  # type: ignore[attr-defined]
    if flagged:
        zero.constant_value = 0.0  # type: ignore[attr-defined]
    return zero


PROMPTS = ["a red cat", "a blue dog"]
LATENT_MODES = ("ddim", "das-free", "zero-before", "zero-after", "gradient", "tweedie")
LATENT_LABELS = {
    "das-free": "gradient-free DAS (ramp reward)",
    "zero-before": "zero-reward DAS, before (unflagged)",
    "zero-after": "zero-reward DAS, after (constant_value=0)",
    "gradient": "guided DAS, guidance='gradient'",
    "tweedie": "guided DAS, guidance='tweedie'",
}
LATENT_GOALS = {"das-free": 1.10, "zero-before": 1.10, "zero-after": 1.10, "gradient": 2.0,
                "tweedie": 2.0}


def latent_run(mode: str, prior, reward, P: int, steps: int, seed: int):
    """One run; plain DDIM returns the final rewards, DAS modes their ``DASResult``."""
    g = torch.Generator(device=prior.device).manual_seed(seed)
    if mode == "ddim":  # plain DDIM η=1 over the same prompts, decoded once at the end
        sched = DDIMSchedule(prior.alphas_cumprod, ScheduleConfig(num_steps=steps))
        _, ctx = prior.prepare_context(PROMPTS, P)
        x = torch.randn((len(PROMPTS) * P, *prior.latent_shape), generator=g, device=prior.device)
        with torch.no_grad():
            for k, t in enumerate(sched.timesteps):
                a = sched.alpha_bar[k]
                eps = prior.predict_noise(x, t, ctx)
                x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
                x = sched.transition_mean(k, x0, eps)
                if sched.sigmas[k] > 0:
                    x = x + sched.sigmas[k] * torch.randn(x.shape, generator=g, device=x.device)
            return reward(prior.decode(x))
    r = {"zero-before": zero_reward(False), "zero-after": zero_reward(True)}.get(mode, reward)
    guidance = mode if mode in ("gradient", "tweedie") else "none"
    return sample(prior, r, num_particles=P, alpha=0.01, num_steps=steps, guidance=guidance,
                  conditions=PROMPTS, generator=g)


class _Clock:
    """Seconds spent inside wrapped callables, by name: process CPU seconds on the CPU (robust
    to a loaded machine with one torch thread), synchronized wall seconds on CUDA."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.now = time.perf_counter if device.startswith("cuda") else time.process_time
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            _sync(self.device)
            t0 = self.now()
            out = fn(*args, **kwargs)
            _sync(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + self.now() - t0
            return out

        for attr in ("differentiable", "constant_value"):  # the reward's flags
            if hasattr(fn, attr):
                setattr(timed, attr, getattr(fn, attr))
        return timed


PROFILE_PARTS = ("unet", "decode", "reward", "tempering", "resampling")


def latent_profile(prior, reward, mode: str, P: int, steps: int, device: str) -> dict[str, float]:
    """Seconds per component of one run: UNet forward (CFG: both branches), VAE decode
    forward, reward forward, choosing `λ` (tempering), resampling, and the rest (backward
    passes, proposals, weights, gathering the resampled particles)."""
    import optimizer.smc.sampler as smc_sampler
    from optimizer.das import build_sampler

    clock = _Clock(device)
    predict, decode = prior.predict_noise, prior.decode
    prior.predict_noise = clock.wrap("unet", predict)
    prior.decode = clock.wrap("decode", decode)
    resample_groups = smc_sampler.resample_groups
    smc_sampler.resample_groups = clock.wrap("resampling", resample_groups)
    r = {"zero-before": zero_reward(False), "zero-after": zero_reward(True)}.get(mode, reward)
    try:
        _sync(device)
        t0 = clock.now()
        if mode == "ddim":
            latent_run(mode, prior, clock.wrap("reward", r), P, steps, seed=0)
        else:
            g = torch.Generator(device=prior.device).manual_seed(0)
            guidance = mode if mode in ("gradient", "tweedie") else "none"
            sampler, _ = build_sampler(prior, clock.wrap("reward", r), num_particles=P,
                                       alpha=0.01, num_steps=steps, guidance=guidance,
                                       conditions=PROMPTS, generator=g)
            sampler.tempering.next_lambda = clock.wrap(  # type: ignore[method-assign]
                "tempering", sampler.tempering.next_lambda)
            sampler.run()
        _sync(device)
        total = clock.now() - t0
    finally:
        del prior.predict_noise, prior.decode  # back to the class's methods
        smc_sampler.resample_groups = resample_groups
    parts = {k: clock.seconds.get(k, 0.0) for k in PROFILE_PARTS}
    return {**parts, "rest": total - sum(parts.values()), "total": total}


def latent_bench(args: argparse.Namespace) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prior = make_latent_prior(args.device, Path(tmp))
    reward = make_reward(args.device)
    print(f"DAS overhead bench, latent prior: device={args.device}, steps={args.steps}, "
          f"{len(PROMPTS)} prompts, tiny UNet2DConditionModel 4x8x8 + AutoencoderKL 3x16x16, "
          f"torch threads={torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    for mode in LATENT_MODES:  # warm-up
        latent_run(mode, prior, reward, 2, 3, seed=0)
    for P in args.particles:
        wall: dict[str, list[float]] = {m: [] for m in LATENT_MODES}
        cpu: dict[str, list[float]] = {m: [] for m in LATENT_MODES}
        ess: dict[str, list[torch.Tensor]] = {"gradient": [], "tweedie": []}
        for r in range(args.repeats):  # interleaved, so load changes hit every mode alike
            for mode in LATENT_MODES:
                _sync(args.device)
                t0, c0 = time.perf_counter(), time.process_time()
                out = latent_run(mode, prior, reward, P, args.steps, seed=r)
                _sync(args.device)
                wall[mode].append(time.perf_counter() - t0)
                cpu[mode].append(time.process_time() - c0)
                if mode in ess:
                    ess[mode].append(out.ess.float().cpu())
        w = {m: statistics.median(v) for m, v in wall.items()}
        c = {m: statistics.median(v) for m, v in cpu.items()}
        print(f"\nP = {P} per prompt (median of {args.repeats}; wall s / process CPU s per "
              f"{args.steps}-step run), load average {os.getloadavg()[0]:.2f}:", flush=True)
        for m in LATENT_MODES:
            print(f"  {m:<12s} {w[m]:8.3f} s wall {c[m]:8.3f} s CPU")
        for m, label in LATENT_LABELS.items():
            print(f"  {label:<42s} / plain DDIM = {w[m] / w['ddim']:.3f}x wall, "
                  f"{c[m] / c['ddim']:.3f}x CPU  (goal <= {LATENT_GOALS[m]:.2f}x)")
        print(f"  ESS over the {args.steps} steps, same ramp reward and seeds, "
              f"{len(PROMPTS)} groups x {P} particles (mean over runs):")
        for m, runs in ess.items():
            e = torch.stack(runs)  # runs x T x G
            print(f"    {m:<9s} min {e.amin(dim=(1, 2)).mean():7.2f}   mean "
                  f"{e.mean(dim=(1, 2)).mean():7.2f}   final {e[:, -1].mean():7.2f}  "
                  f"(of {P}; CPU per unit of mean ESS "
                  f"{c[m] / e.mean().item():.3f} s)")
        unit = "wall s" if args.device.startswith("cuda") else "process CPU s"
        print(f"  profile of one run per mode ({unit}, one pass, not interleaved; "
              f"load average {os.getloadavg()[0]:.2f}):")
        print(f"    {'mode':<12s} {'UNet fwd':>9s} {'decode fwd':>11s} {'reward fwd':>11s} "
              f"{'tempering':>10s} {'resampling':>11s} {'rest':>8s} {'total':>8s}   rest = "
              f"backward passes, proposals, weights, gathers")
        for m in LATENT_MODES:
            p = latent_profile(prior, reward, m, P, args.steps, args.device)
            print(f"    {m:<12s} {p['unet']:9.3f} {p['decode']:11.3f} {p['reward']:11.3f} "
                  f"{p['tempering']:10.3f} {p['resampling']:11.3f} {p['rest']:8.3f} "
                  f"{p['total']:8.3f}", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--particles", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared CPU, thread wake-ups "
                             "dominate small ops; 0 keeps torch's default)")
    parser.add_argument("--prior", choices=("pixel", "latent"), default="pixel",
                        help="pixel: the pixel UNet figures (default); latent: the tiny SD-layout "
                             "prior, every DAS mode over plain DDIM, guided ESS, a profile")
    parser.add_argument("--_memory-child", dest="child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        print(peak_memory_child(args.device, spec["mode"], spec["P"], args.steps))
        return
    if args.prior == "latent":
        latent_bench(args)
        return

    print(f"DAS overhead bench: device={args.device}, steps={args.steps}, "
          f"UNet2DModel 3x16x16 (32, 64), torch threads={torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for P in args.particles:
        t = timings(args.device, P, args.steps, args.repeats)
        print(f"\nP = {P} (median of {args.repeats}, seconds per {args.steps}-step run):",
              flush=True)
        for m in MODES:
            mem = peak_memory(args.device, m, P, args.steps)
            print(f"  {m:<20s} {t[m]:8.3f} s   peak memory {mem / 2**20:8.1f} MiB", flush=True)
        print(f"  overhead ratio  DAS gradient-free / plain ancestral   = "
              f"{t['das-free'] / t['ancestral']:.3f}x  (goal <= 1.10x)")
        print(f"  guided cost     DAS guided / (forward+backward per step) = "
              f"{t['das-guided'] / t['ancestral+backward']:.3f}x")
        print(f"  guided vs plain DAS guided / plain ancestral           = "
              f"{t['das-guided'] / t['ancestral']:.3f}x")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
