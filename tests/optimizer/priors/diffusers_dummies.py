"""Tiny real diffusers / transformers components under a fixed seed (no downloads).

Like diffusers' pipeline tests' ``get_dummy_components``: real classes, random weights, sizes
small enough for a CPU test. Each ``get_dummy_*_prior`` saves its components with
``save_pretrained`` and loads them back through ``from_pretrained(path)``, so every test that uses
a dummy also exercises the real loading path.

Import from test files in this folder as ``from diffusers_dummies import ...``.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import diffusers
import torch
import transformers

from optimizer.priors.diffusers_latent import LatentDiffusersPrior
from optimizer.priors.diffusers_pixel import PixelDiffusersPrior

TOKEN_LENGTH = 16  # tokenizer model_max_length of the dummy text pipeline (SD uses 77)
CROSS_DIM = 32  # text hidden size = UNet cross-attention width of the dummy


def write_tiny_clip_tokenizer(folder: Path, *, model_max_length: int = TOKEN_LENGTH) -> Path:
    """Write a CLIP BPE ``vocab.json`` + ``merges.txt`` (letters, digits, a few words) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + "!,.-'")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    words = ["cat", "dog", "red", "blue", "photo"]
    merges: list[tuple[str, str]] = []
    for word in words:  # left-to-right merges building each word with its end-of-word suffix
        left = word[0]
        for i, ch in enumerate(word[1:], start=1):
            right = ch + ("</w>" if i == len(word) - 1 else "")
            merges.append((left, right))
            left = left + right
            tokens.append(left)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in dict.fromkeys(merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": model_max_length, "tokenizer_class": "CLIPTokenizer"})
    )
    return folder


def dummy_scheduler(prediction_type: str = "epsilon") -> diffusers.DDPMScheduler:
    """A real 1000-step linear-β DDPM schedule (the DDPM paper's)."""
    return diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction_type,
        clip_sample=False, steps_offset=1,
    )  # fmt: skip


def dummy_pixel_unet(*, num_class_embeds: int | None = None, seed: int = 0) -> diffusers.UNet2DModel:
    """`3 x 8 x 8` UNet2DModel with ``block_out_channels=(4, 8)`` (one attention level)."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(4, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=num_class_embeds,
    )  # fmt: skip


def get_dummy_pixel_prior(
    folder: Path,
    *,
    prediction_type: str = "epsilon",
    num_class_embeds: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> PixelDiffusersPrior:
    """Build, save to ``folder`` and reload a tiny pixel prior."""
    built = PixelDiffusersPrior(
        dummy_pixel_unet(num_class_embeds=num_class_embeds, seed=seed), dummy_scheduler(prediction_type)
    )
    built.save_pretrained(folder)
    return PixelDiffusersPrior.from_pretrained(folder, device=device, dtype=dtype)


def dummy_latent_components(*, seed: int = 0, tokenizer_dir: Path) -> dict[str, object]:
    """UNet2DConditionModel (latent `4 x 8 x 8`), AutoencoderKL (image `3 x 16 x 16`), a
    2-layer CLIPTextModel of width 32 and a CLIPTokenizer read from files in ``tokenizer_dir``."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(4, 8), norm_num_groups=2, cross_attention_dim=CROSS_DIM,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=2, sample_size=16,
    )  # fmt: skip
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(write_tiny_clip_tokenizer(tokenizer_dir)))
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer), hidden_size=CROSS_DIM,
            intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=TOKEN_LENGTH,
        )
    )  # fmt: skip
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer}


def get_dummy_latent_prior(
    folder: Path,
    *,
    guidance_scale: float = 3.0,
    prediction_type: str = "epsilon",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    decode_chunk_size: int | None = None,
) -> LatentDiffusersPrior:
    """Build, save to ``folder`` and reload a tiny Stable-Diffusion-layout prior."""
    parts = dummy_latent_components(seed=seed, tokenizer_dir=Path(folder) / "_tokenizer_src")
    built = LatentDiffusersPrior(**parts, scheduler=dummy_scheduler(prediction_type))
    built.save_pretrained(folder)
    return LatentDiffusersPrior.from_pretrained(
        folder, device=device, dtype=dtype, guidance_scale=guidance_scale,
        decode_chunk_size=decode_chunk_size,
    )  # fmt: skip
