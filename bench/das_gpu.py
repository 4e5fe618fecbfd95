r"""GPU benchmark of DAS at Stable Diffusion 1.5 scale (random weights, no download).

Builds, from configs, networks of SD 1.5's sizes — ``UNet2DConditionModel`` (860 M parameters),
the CLIP ViT-L/14 text encoder, the SD ``AutoencoderKL`` — and a CLIP-sized differentiable reward
(a random CLIP ViT-L/14 vision tower + a linear head on its normalized image embedding, like the
LAION aesthetic predictor). Then, for ``--particles`` particles per prompt and ``--steps`` steps
with classifier-free guidance, it times and prints side by side:

1. guided DAS (gradient proposal: UNet + VAE decoder + reward backward at every step);
2. gradient-free DAS (prior proposal, forward passes only);
3. the reference cost of ONE guided evaluation of all particles (forward + backward), so the
   guided run's per-step cost is reported as a multiple of it (1.0x = no SMC overhead);

with seconds per prompt and peak memory (GPU: ``torch.cuda.max_memory_allocated``; CPU: the
process' peak RSS). Figures only; nothing is asserted.

    python bench/das_gpu.py --device cuda            # SD 1.5 sizes, bfloat16, 16 particles, 50 steps
    python bench/das_gpu.py --tiny --threads 1       # same code path, tiny networks, on the CPU
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import diffusers
import torch
import transformers
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "optimizer" / "priors"))  # tiny dummies + tokenizer files

from diffusers_dummies import dummy_latent_components, write_tiny_clip_tokenizer  # noqa: E402

from optimizer.das import sample  # noqa: E402
from optimizer.priors.diffusers_latent import LatentDiffusersPrior  # noqa: E402

# Stable Diffusion 1.5's published component configs (runwayml/stable-diffusion-v1-5).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    norm_num_groups=32, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
)  # fmt: skip
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, scaling_factor=0.18215,
)  # fmt: skip
CLIP_L14_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
)  # fmt: skip
CLIP_L14_VISION = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
)  # fmt: skip
TINY_VISION = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    image_size=32, patch_size=8, projection_dim=16,
)  # fmt: skip
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPTS = ["a photo of a red cat", "a blue dog", "a cat", "a dog photo"]


class ClipHeadReward(nn.Module):
    """`r(img) = w · e(img) / |e(img)| + b`, `e` the CLIP image embedding (differentiable).

    `B x 3 x H x W` images in [−1, 1] → `B` rewards; resized to the tower's input size and
    normalized with CLIP's mean / std, as aesthetic-style predictors do.
    """

    def __init__(self, vision: transformers.CLIPVisionModelWithProjection) -> None:
        super().__init__()
        self.vision = vision
        self.size = vision.config.image_size
        self.head = nn.Linear(vision.config.projection_dim, 1)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = (images.float() + 1.0) / 2.0  # resize in float32 (antialiasing has no bf16 kernel on CPU)
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        x = ((x - self.mean) / self.std).to(self.head.weight.dtype)
        emb = self.vision(pixel_values=x).image_embeds
        return self.head(emb / emb.norm(dim=-1, keepdim=True)).squeeze(-1).float()


def build(tiny: bool, device: torch.device, dtype: torch.dtype, args: argparse.Namespace, tmp: Path):
    """The latent prior and the reward, random weights under seed 0, on ``device`` in ``dtype``."""
    torch.manual_seed(0)
    scheduler = diffusers.DDIMScheduler(  # SD 1.5's training schedule
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    if tiny:
        parts = dummy_latent_components(tokenizer_dir=tmp / "tokenizer")
        vision_config = TINY_VISION
    else:
        tokenizer = transformers.CLIPTokenizer.from_pretrained(
            str(write_tiny_clip_tokenizer(tmp / "tokenizer", model_max_length=77))
        )
        with torch.device(device):  # initialize the big networks where they will run
            parts = {
                "unet": diffusers.UNet2DConditionModel(**SD15_UNET),
                "vae": diffusers.AutoencoderKL(**SD15_VAE),
                "text_encoder": transformers.CLIPTextModel(transformers.CLIPTextConfig(
                    **CLIP_L14_TEXT, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)),
                "tokenizer": tokenizer,
            }  # fmt: skip
        vision_config = CLIP_L14_VISION
    prior = LatentDiffusersPrior(
        **parts, scheduler=scheduler, guidance_scale=args.guidance_scale,
        decode_chunk_size=args.decode_chunk_size, device=device, dtype=dtype,
    )  # fmt: skip
    with torch.device(device):
        vision = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**vision_config))
        reward = ClipHeadReward(vision)
    reward.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return prior, reward


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_sample(prior, reward, args, *, guidance: str, steps: int, device) -> tuple[float, float, object]:
    """Seconds and peak memory (MiB) of one ``sample`` call over ``args.prompts`` prompts.

    Particles are kept in float32 whatever the networks' dtype (weights and moves stay exact).
    """
    gen = torch.Generator(device=device).manual_seed(0)
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    res = sample(
        prior, reward, num_particles=args.particles, alpha=args.alpha, num_steps=steps,
        conditions=PROMPTS[: args.prompts], guidance=guidance, generator=gen,
        chunk_size=args.chunk_size, gradient_checkpointing=args.checkpointing, dtype=torch.float32,
    )  # fmt: skip
    _sync(device)
    return time.perf_counter() - start, _peak_mib(device), res


def with_oom_retry(run, args, device):
    """Run ``run()``; on a CUDA out-of-memory error halve ``args.chunk_size`` and retry."""
    while True:
        try:
            return run()
        except torch.OutOfMemoryError:
            rows = args.chunk_size or args.particles * args.prompts
            if rows <= 1:
                raise
            args.chunk_size = rows // 2
            torch.cuda.empty_cache()
            print(f"  out of GPU memory with {rows} rows per evaluation; "
                  f"retrying with chunk_size {args.chunk_size}")


def reference_step(prior, reward, args, device, repeats: int = 3) -> float:
    """Seconds of one guided evaluation of all rows: UNet (CFG) + decode + reward, fwd + bwd."""
    _, ctx = prior.prepare_context(PROMPTS[: args.prompts], args.particles)
    rows = ctx.shape[0]
    step = rows if args.chunk_size is None else args.chunk_size
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(rows, *prior.latent_shape, generator=gen, device=device, dtype=prior.dtype)
    t, a = 500, float(prior.alphas_cumprod[500])

    def once() -> None:
        for i in range(0, rows, step):
            xg = x[i : i + step].detach().requires_grad_(True)
            eps = prior.predict_noise(xg, t, ctx[i : i + step])
            x0 = (xg - math.sqrt(1 - a) * eps) / math.sqrt(a)
            (grad,) = torch.autograd.grad(reward(prior.decode(x0)).sum(), xg)

    once()  # warm-up (kernel selection, allocator)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny networks (CPU smoke run of the same path)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--particles", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--prompts", type=int, default=1, choices=range(1, len(PROMPTS) + 1))
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--guidance-scale", type=float, default=5.0, help="CFG weight (paper: 5.0)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="rows per guided evaluation (default: 4 on cuda, all on cpu; halved on OOM)")
    p.add_argument("--decode-chunk-size", type=int, default=None, help="rows per VAE decode")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    p.add_argument("--skip-gradient-free", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 avoids spinning threads on a contended CPU)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    dtype_name = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    if args.chunk_size is None and device.type == "cuda" and not args.tiny:
        args.chunk_size = 4  # UNet (2x4 rows with CFG) + 512 px VAE decoder + ViT-L backward per chunk
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        prior, reward = build(args.tiny, device, dtype, args, Path(tmp))
        _sync(device)
        build_s = time.perf_counter() - t0
    size = "tiny" if args.tiny else "SD 1.5 sizes"
    n_unet = sum(q.numel() for q in prior.unet.parameters()) / 1e6
    n_reward = sum(q.numel() for q in reward.parameters()) / 1e6
    print(f"DAS GPU bench: {size}, device={device}, dtype={dtype_name}, image "
          f"{prior.vae_scale_factor * prior.latent_shape[1]}px, latent {prior.latent_shape}")
    print(f"  UNet {n_unet:.4g} M params, reward {n_reward:.4g} M params, built in {build_s:.1f} s")
    print(f"  {args.prompts} prompt(s) x {args.particles} particles, {args.steps} steps, "
          f"CFG {args.guidance_scale}, alpha {args.alpha}, checkpointing {args.checkpointing}")

    # warm-up (kernels, allocator; finds a chunk size that fits on the GPU)
    def guided(steps: int):
        return timed_sample(prior, reward, args, guidance="gradient", steps=steps, device=device)

    with_oom_retry(lambda: guided(2), args, device)
    ref_s = reference_step(prior, reward, args, device)
    g_s, g_mem, g_res = with_oom_retry(lambda: guided(args.steps), args, device)
    resampled = int(g_res.resampled.sum())
    print(f"guided DAS:        {g_s / args.prompts:8.2f} s/prompt   peak memory {g_mem:9.0f} MiB   "
          f"({g_s / args.steps:.3f} s/step, {resampled} group resamplings, "
          f"final ESS {float(g_res.ess[-1].mean()):.1f}/{args.particles})")
    print(f"  chunk_size {args.chunk_size}; one guided evaluation (fwd+bwd, all rows): "
          f"{ref_s:.3f} s -> guided step = "
          f"{g_s / args.steps / ref_s:.2f}x of it")
    if not args.skip_gradient_free:
        f_s, f_mem, _ = timed_sample(prior, reward, args, guidance="none", steps=args.steps, device=device)
        print(f"gradient-free DAS: {f_s / args.prompts:8.2f} s/prompt   peak memory {f_mem:9.0f} MiB   "
              f"(guided / gradient-free time = {g_s / f_s:.2f}x)")
    if device.type != "cuda":
        print("  (CPU: peak memory is the process' peak resident set size, over the whole run)")


if __name__ == "__main__":
    main()
