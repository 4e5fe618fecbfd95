r"""A pixel-space diffusers model (``UNet2DModel`` + a DDPM-family scheduler) as a DAS prior.

`x_t = sqrt(ā_t) x_0 + sqrt(1 − ā_t) ε` on images `C x H x W`; the UNet predicts ε, x0 or v
(converted to ε, see ``diffusers_common``). Designs are the images themselves: ``decode`` is the
identity and designs live in the model's training range, **[−1, 1] for diffusers' DDPM models**
(not clamped, so reward gradients flow; a reward expecting [0, 1] should use `(x + 1) / 2`).

Folder layout read by ``from_pretrained`` (what ``DDPMPipeline.save_pretrained`` writes)::

    path/unet/config.json + diffusion_pytorch_model.safetensors
    path/scheduler/scheduler_config.json
    path/model_index.json            (optional)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diffusers
import torch
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

_LAYOUT = "'unet/config.json' and 'scheduler/scheduler_config.json' (a DDPMPipeline folder)"
_REQUIRED = {"unet": ("config.json",), "scheduler": ("scheduler_config.json",)}


class PixelDiffusersPrior:
    r"""An unconditional or class-conditional pixel diffusion model seen by the DAS sampler.

    `ε̂(x_t, t) = convert(UNet(x_t, t [, y]))`, `ā_t` from the scheduler's ``alphas_cumprod``.

    1. ``prepare_context(None, P)`` gives one unconditional group (context None); with a
       class-conditional UNet (``num_class_embeds`` set), ``prepare_context([y_1..y_G], P)`` gives
       a `G*P`-dim LongTensor of labels, row `g*P + p` carrying `y_g`.
    2. ``predict_noise`` runs the UNet once on the rows it is given and converts its output to ε
       (a learned-variance second half of the channels is dropped).
    3. ``decode`` is the identity: designs are `C x H x W` images in [−1, 1].

    Example:
        >>> prior = PixelDiffusersPrior.from_pretrained("models/ddpm-cifar10", device="cuda")
        >>> G, context = prior.prepare_context(None, num_particles=16)
        >>> x = torch.randn(16, *prior.latent_shape, device=prior.device)
        >>> eps = prior.predict_noise(x, 999, context)
    """

    def __init__(
        self,
        unet: diffusers.UNet2DModel,
        scheduler: Any,
        *,
        prediction_type: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Wrap loaded components.

        Args:
            unet: a ``diffusers.UNet2DModel`` (frozen here: eval mode, no parameter gradients).
            scheduler: any diffusers scheduler with ``alphas_cumprod`` (only its schedule is used).
            prediction_type: overrides the scheduler config's ``prediction_type``.
            device: where to run; default the UNet's current device.
            dtype: parameter and particle dtype; default the UNet's current dtype.
        """
        if not isinstance(unet, diffusers.UNet2DModel):
            raise PriorError(
                f"unet must be a diffusers.UNet2DModel, got {type(unet).__name__}; "
                "text-conditioned UNet2DConditionModel pipelines use LatentDiffusersPrior"
            )
        if getattr(unet.config, "time_embedding_type", "positional") == "fourier":
            raise PriorError(
                "unet uses 'fourier' time embeddings (a score-SDE VE model, indexed by noise level, "
                "not by a VP timestep); only DDPM-family (variance-preserving) UNets are supported"
            )
        where = f"UNet2DModel({unet.config.in_channels} channels)"
        self.device, self.dtype = resolve_device_dtype(unet, device, dtype)
        self.unet = freeze(unet, self.device, self.dtype)
        self.scheduler = scheduler
        self.prediction_type = prediction_type_of(scheduler, prediction_type, where=where)
        abar64 = schedule_of(scheduler, where=where)
        self._abar_host: list[float] = abar64.tolist()  # host copy: no device sync per step
        # float32 at least: ā_t near 1 is not representable in half precision.
        self.alphas_cumprod = abar64.to(self.device, torch.promote_types(self.dtype, torch.float32))
        size = unet.config.sample_size
        if size is None:
            raise PriorError(f"{where} config has no sample_size; set it in unet/config.json")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        channels = unet.config.in_channels
        self.latent_shape: tuple[int, ...] = (channels, int(h), int(w))
        # learned-variance models (e.g. improved DDPM) output [ε, variance] on 2C channels.
        self._split_variance = unet.config.out_channels == 2 * channels
        self.num_classes: int | None = unet.config.num_class_embeds

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        prediction_type: str | None = None,
    ) -> PixelDiffusersPrior:
        """Load ``path/unet`` and ``path/scheduler`` from a local folder (or a hub id).

        Raises:
            PriorError: the folder, a subfolder or its config is missing (the message names the
                path and the expected layout).
        """
        source = resolve_source(path, _REQUIRED, _LAYOUT)
        try:
            unet = diffusers.UNet2DModel.from_pretrained(source, subfolder="unet")
            scheduler = load_scheduler(source)
        except (OSError, ValueError) as err:
            raise load_error("pixel", path, _LAYOUT, err) from err
        return cls(unet, scheduler, prediction_type=prediction_type, device=device, dtype=dtype)

    def save_pretrained(self, path: str | Path) -> None:
        """Write a ``DDPMPipeline`` folder (``unet/``, ``scheduler/``, ``model_index.json``)."""
        diffusers.DDPMPipeline(unet=self.unet, scheduler=self.scheduler).save_pretrained(str(path))

    def enable_gradient_checkpointing(self) -> None:
        """Recompute UNet activations in the backward pass (less memory for guided sampling)."""
        self.unet.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ the protocol
    @property
    def num_train_timesteps(self) -> int:
        """`T_train`, the length of ``alphas_cumprod``."""
        return len(self._abar_host)

    def predict_noise(self, x: Tensor, t: int, context: Tensor | None = None) -> Tensor:
        """`ε̂(x_t, t)` for `B x C x H x W` rows; ``context`` is the `B`-dim label tensor or None."""
        check_rows(x, self.latent_shape)
        step = check_timestep(t, self.num_train_timesteps)
        labels = self._labels_for(context, x.shape[0])
        timesteps = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        out = self.unet(x.to(self.dtype), timesteps, class_labels=labels).sample
        if self._split_variance:
            out = out[:, : self.latent_shape[0]]
        return to_epsilon(out, x.to(out.dtype), self._abar_host[step], self.prediction_type).to(x.dtype)

    def decode(self, x0: Tensor) -> Tensor:
        """Identity: designs are images in the model's range ([−1, 1] for DDPM models)."""
        return x0

    def prepare_context(
        self, conditions: Sequence[Any] | None, num_particles: int
    ) -> tuple[int, Tensor | None]:
        """Per-row class labels for `G` conditions x `P` particles (None if unconditional).

        ``conditions``: None (one group); for an unconditional UNet also a list of G Nones
        (G independent groups); for a class-conditional UNet a list of G class indices.
        """
        if not isinstance(num_particles, int) or num_particles < 1:
            raise PriorError(f"num_particles must be a positive int, got {num_particles!r}")
        if self.num_classes is None:
            if conditions is None:
                return 1, None
            if len(conditions) > 0 and all(c is None for c in conditions):
                return len(conditions), None
            raise PriorError(
                f"this pixel prior is unconditional (no num_class_embeds) but got conditions "
                f"{list(conditions)[:4]!r}; pass None, or [None] * G for G independent groups"
            )
        if conditions is None or len(conditions) == 0:
            raise PriorError(
                f"this pixel prior is class-conditional ({self.num_classes} classes): pass "
                "conditions as a list of class indices, one per group"
            )
        for g, c in enumerate(conditions):
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < self.num_classes:
                raise PriorError(
                    f"conditions[{g}] = {c!r} is not a class index in [0, {self.num_classes})"
                )
        labels = torch.tensor(list(conditions), dtype=torch.long, device=self.device)
        return len(conditions), labels.repeat_interleave(num_particles)

    def _labels_for(self, context: Tensor | None, rows: int) -> Tensor | None:
        if self.num_classes is None:
            if context is not None:
                raise PriorError("this pixel prior is unconditional: pass context=None")
            return None
        if context is None or context.shape != (rows,):
            got = None if context is None else tuple(context.shape)
            raise PriorError(
                f"class-conditional prior needs context of shape ({rows},) from prepare_context "
                f"(sliced like x), got {got}"
            )
        return context
