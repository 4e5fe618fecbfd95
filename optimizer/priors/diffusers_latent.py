r"""A Stable-Diffusion-style latent text-to-image pipeline as a DAS prior.

Text-conditioned latent diffusion with classifier-free guidance (CFG):

    `ε̂(z_t, t, c) = ε_u + w (ε_c − ε_u)`,  `ε_u = ε_θ(z_t, t, ∅)`,  `ε_c = ε_θ(z_t, t, c)`

with `w` = ``guidance_scale``, `c` the CLIP text embedding of the prompt and `∅` that of the
negative prompt (default ""). Particles live in the VAE latent space `C x h x w`; ``decode`` maps
`x̂0` through the VAE decoder, `image = VAE.decode(z / scaling_factor + shift)`, into **images in
[−1, 1]** (`B x 3 x H x W`, not clamped so reward gradients flow) — rewards see images.

Folder layout read by ``from_pretrained`` (what ``StableDiffusionPipeline.save_pretrained`` writes):
``text_encoder/``, ``tokenizer/``, ``unet/``, ``vae/``, ``scheduler/`` (+ ``model_index.json``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from torch import Tensor

from optimizer.errors import PriorError
from optimizer.priors.diffusers_common import (
    check_rows,
    check_timestep,
    freeze,
    load_error,
    load_scheduler,
    prediction_type_of,
    resolve_device_dtype,
    resolve_source,
    schedule_of,
    to_epsilon,
)

_LAYOUT = (
    "a Stable Diffusion folder with text_encoder/, tokenizer/, unet/, vae/ and scheduler/ "
    "subfolders"
)
_REQUIRED = {
    "text_encoder": ("config.json",),
    "tokenizer": ("vocab.json", "tokenizer.json", "tokenizer_config.json"),
    "unet": ("config.json",),
    "vae": ("config.json",),
    "scheduler": ("scheduler_config.json",),
}


class LatentDiffusersPrior:
    r"""Text-to-image latent diffusion (SD 1.x / 2.x layout) with CFG, seen by the DAS sampler.

    `ε̂ = ε_u + w (ε_c − ε_u)`; with `w = 1` only the conditional row is evaluated.

    1. ``prepare_context(prompts, P)`` encodes the G prompts and the negative prompt once and
       returns a `G*P x K x L x D`-dim Tensor, `K = 2` rows ``[uncond, cond]`` (`K = 1`, cond
       only, when ``guidance_scale == 1``), row `g*P + p` belonging to prompt `g`.
    2. ``predict_noise(z, t, context)`` stacks the `K` copies of the `B` rows into ONE UNet
       batch of `K*B` rows, mixes them with the guidance formula and converts to ε.
    3. ``decode(z0)`` runs the VAE decoder (optionally ``decode_chunk_size`` rows at a time)
       and returns `B x 3 x H x W` images in [−1, 1].

    Example:
        >>> prior = LatentDiffusersPrior.from_pretrained("models/sd15", guidance_scale=5.0)
        >>> G, context = prior.prepare_context(["a cat", "a dog"], num_particles=4)
        >>> z = torch.randn(G * 4, *prior.latent_shape, device=prior.device)
        >>> images = prior.decode(z)  # 8 x 3 x 512 x 512, in [-1, 1]
    """

    def __init__(
        self,
        unet: diffusers.UNet2DConditionModel,
        vae: diffusers.AutoencoderKL,
        text_encoder: transformers.PreTrainedModel,
        tokenizer: Any,
        scheduler: Any,
        *,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        decode_chunk_size: int | None = None,
        prediction_type: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Wrap loaded components (all frozen: eval mode, no parameter gradients).

        Args:
            unet: a ``diffusers.UNet2DConditionModel``.
            vae: a ``diffusers.AutoencoderKL`` (``config.scaling_factor`` and ``shift_factor``).
            text_encoder: a ``transformers.CLIPTextModel`` (its last hidden state conditions the UNet).
            tokenizer: the matching tokenizer (e.g. ``CLIPTokenizer``).
            scheduler: any diffusers scheduler with ``alphas_cumprod``.
            guidance_scale: CFG weight `w` (`w = 1`: conditional model alone, half the UNet work).
            negative_prompt: the prompt of the unconditional branch.
            height: image height in pixels; default ``unet.config.sample_size * vae_scale_factor``.
            width: image width in pixels; default like ``height``.
            decode_chunk_size: decode at most this many rows through the VAE at once (memory).
            prediction_type: overrides the scheduler config's ``prediction_type``.
            device: where to run; default the UNet's device.
            dtype: dtype of the UNet, text encoder and particles; default the UNet's dtype.
        """
        if not isinstance(unet, diffusers.UNet2DConditionModel):
            raise PriorError(
                f"unet must be a diffusers.UNet2DConditionModel, got {type(unet).__name__}; "
                "unconditional UNet2DModel pipelines use PixelDiffusersPrior"
            )
        if not isinstance(vae, diffusers.AutoencoderKL):
            raise PriorError(f"vae must be a diffusers.AutoencoderKL, got {type(vae).__name__}")
        if not float(guidance_scale) >= 0.0:
            raise PriorError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale!r}")
        if decode_chunk_size is not None and decode_chunk_size < 1:
            raise PriorError(f"decode_chunk_size must be a positive int or None, got {decode_chunk_size!r}")
        width_dim = unet.config.cross_attention_dim
        hidden = text_encoder.config.hidden_size
        if isinstance(width_dim, int) and width_dim != hidden:
            raise PriorError(
                f"text encoder hidden_size {hidden} != unet cross_attention_dim {width_dim}: the "
                "text encoder does not belong to this UNet"
            )
        where = "UNet2DConditionModel"
        self.device, self.dtype = resolve_device_dtype(unet, device, dtype)
        self.unet = freeze(unet, self.device, self.dtype)
        self.text_encoder = freeze(text_encoder, self.device, self.dtype)
        # SD's fp16 VAE overflows (config.force_upcast): keep it in float32 then.
        self._vae_dtype = (
            torch.float32
            if self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
            else self.dtype
        )
        self.vae = freeze(vae, self.device, self._vae_dtype)
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.guidance_scale = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.decode_chunk_size = decode_chunk_size
        self.prediction_type = prediction_type_of(scheduler, prediction_type, where=where)
        abar64 = schedule_of(scheduler, where=where)
        self._abar_host: list[float] = abar64.tolist()  # host copy: no device sync per step
        self.alphas_cumprod = abar64.to(self.device, torch.promote_types(self.dtype, torch.float32))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        size = unet.config.sample_size
        default_h, default_w = (size, size) if isinstance(size, int) else tuple(size)
        h = default_h if height is None else self._latent_side("height", height)
        w = default_w if width is None else self._latent_side("width", width)
        self.latent_shape: tuple[int, ...] = (unet.config.in_channels, int(h), int(w))
        self.scaling_factor = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0

    def _latent_side(self, name: str, pixels: int) -> int:
        if pixels < 1 or pixels % self.vae_scale_factor:
            raise PriorError(
                f"{name}={pixels} is not a positive multiple of the VAE scale factor "
                f"{self.vae_scale_factor}"
            )
        return pixels // self.vae_scale_factor

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        height: int | None = None,
        width: int | None = None,
        decode_chunk_size: int | None = None,
        prediction_type: str | None = None,
    ) -> LatentDiffusersPrior:
        """Load the five components of a Stable Diffusion folder (local path or hub id).

        Raises:
            PriorError: the folder or a component subfolder is missing (the message names the
                path and the expected layout), or a component fails to load.
        """
        source = resolve_source(path, _REQUIRED, _LAYOUT)
        try:
            unet = diffusers.UNet2DConditionModel.from_pretrained(source, subfolder="unet")
            vae = diffusers.AutoencoderKL.from_pretrained(source, subfolder="vae")
            text_encoder = transformers.CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
            tokenizer = transformers.CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            scheduler = load_scheduler(source)
        except (OSError, ValueError) as err:
            raise load_error("latent", path, _LAYOUT, err) from err
        return cls(
            unet, vae, text_encoder, tokenizer, scheduler,
            guidance_scale=guidance_scale, negative_prompt=negative_prompt, height=height,
            width=width, decode_chunk_size=decode_chunk_size, prediction_type=prediction_type,
            device=device, dtype=dtype,
        )  # fmt: skip

    def save_pretrained(self, path: str | Path) -> None:
        """Write a ``StableDiffusionPipeline`` folder (no safety checker) that both
        ``from_pretrained`` and diffusers' own pipeline load."""
        pipe = diffusers.StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=self.scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )  # fmt: skip
        pipe.save_pretrained(str(path))

    def enable_gradient_checkpointing(self) -> None:
        """Recompute UNet and VAE-decoder activations in the backward pass (less memory)."""
        self.unet.enable_gradient_checkpointing()
        self.vae.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ the protocol
    @property
    def num_train_timesteps(self) -> int:
        """`T_train`, the length of ``alphas_cumprod``."""
        return len(self._abar_host)

    @property
    def uses_guidance(self) -> bool:
        """Whether the unconditional branch is evaluated (``guidance_scale != 1``)."""
        return self.guidance_scale != 1.0

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> Tensor:
        """`G x L x D`-dim Tensor: the text encoder's last hidden state for each prompt."""
        # a tokenizer saved without model_max_length reports 1e30: cap at the encoder's positions
        length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
        tokens = self.tokenizer(
            list(prompts), padding="max_length", max_length=length, truncation=True,
            return_tensors="pt",
        )  # fmt: skip
        ids = tokens.input_ids.to(self.device)
        return self.text_encoder(ids).last_hidden_state.to(self.dtype)

    def prepare_context(
        self, conditions: Sequence[str] | None, num_particles: int
    ) -> tuple[int, Tensor]:
        """Encode `G` prompts for `P` particles each: `G*P x K x L x D`-dim Tensor.

        ``conditions``: a list of prompt strings, one group each; None means one group with the
        empty prompt. `K = 2` rows ``[negative, prompt]`` under guidance, else `K = 1`.
        """
        if not isinstance(num_particles, int) or num_particles < 1:
            raise PriorError(f"num_particles must be a positive int, got {num_particles!r}")
        prompts = [""] if conditions is None else conditions
        if isinstance(prompts, str) or len(prompts) == 0:
            raise PriorError(
                f"conditions must be a non-empty list of prompt strings (one group each), got "
                f"{prompts!r}; wrap a single prompt as [prompt]"
            )
        for g, p in enumerate(prompts):
            if not isinstance(p, str):
                raise PriorError(f"conditions[{g}] = {p!r} is not a prompt string")
        cond = self.encode_prompts(prompts)  # G x L x D
        if self.uses_guidance:
            uncond = self.encode_prompts([self.negative_prompt]).expand_as(cond)
            per_group = torch.stack([uncond, cond], dim=1)  # G x 2 x L x D
        else:
            per_group = cond.unsqueeze(1)  # G x 1 x L x D
        return len(prompts), per_group.repeat_interleave(num_particles, dim=0)

    def predict_noise(self, x: Tensor, t: int, context: Tensor | None = None) -> Tensor:
        """Guided `ε̂(z_t, t)` for `B` latent rows with their `B x K x L x D` context rows."""
        check_rows(x, self.latent_shape)
        k = 2 if self.uses_guidance else 1
        if context is None or context.ndim != 4 or context.shape[0] != x.shape[0] or context.shape[1] != k:
            got = None if context is None else tuple(context.shape)
            raise PriorError(
                f"context must be the ({x.shape[0]}, {k}, L, D) rows of prepare_context sliced like "
                f"x (guidance_scale={self.guidance_scale}), got {got}"
            )
        step = check_timestep(t, self.num_train_timesteps)
        rows = x.shape[0]
        z = x.to(self.dtype)
        # one UNet batch: [uncond rows; cond rows] (K*B rows)
        z_in = z.repeat(k, *([1] * (z.ndim - 1)))
        emb = context.transpose(0, 1).reshape(k * rows, *context.shape[2:]).to(self.dtype)
        timesteps = torch.full((k * rows,), step, device=x.device, dtype=torch.long)
        out = self.unet(z_in, timesteps, encoder_hidden_states=emb).sample
        out = out[:, : self.latent_shape[0]]  # drop a learned-variance half if any
        if k == 2:
            out_u, out_c = out[:rows], out[rows:]
            out = out_u + self.guidance_scale * (out_c - out_u)
        return to_epsilon(out, z, self._abar_host[step], self.prediction_type).to(x.dtype)

    def decode(self, x0: Tensor) -> Tensor:
        """`B x 3 x H x W` images in [−1, 1] from `B x C x h x w` clean latents (differentiable)."""
        z = (x0 / self.scaling_factor + self.shift_factor).to(self._vae_dtype)
        chunk = self.decode_chunk_size or z.shape[0]
        images = [self.vae.decode(part).sample for part in z.split(chunk)]
        return torch.cat(images).to(x0.dtype)
