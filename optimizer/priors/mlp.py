r"""A small vector diffusion prior: an MLP `ε`-network with a sinusoidal timestep embedding.

Diffusion runs on standardized designs: `x_0 = (design - μ) / s` (per-dimension data mean `μ`
and scale `s`, stored with the weights), so ``decode(x0) = μ + s ⊙ x0`` and the VP forward
process is `x_t = sqrt(ā_t) x_0 + sqrt(1 - ā_t) ε`, with `ā_t` of the configured beta schedule
(diffusers' formulas, computed by ``make_alphas_cumprod``).

`ε_θ(x_t, t)`: ``num_blocks`` residual blocks `h ← h + W₂ SiLU(W₁ LayerNorm(h) + E(t))` on a
width-``hidden`` stream, `E(t)` an MLP of the sinusoidal embedding of `t / T_train`.

Folder layout (``save_pretrained`` / ``from_pretrained``; JSON + safetensors, no pickle)::

    path/config.json          {"_class_name": "MLPDiffusionPrior", "dim": ..., ...}
    path/model.safetensors    network weights + "data_mean", "data_std"

>>> prior = MLPDiffusionPrior(MLPDiffusionConfig(dim=16))
>>> prior.predict_noise(torch.randn(8, 16), t=500).shape
torch.Size([8, 16])
>>> prior.save_pretrained("/tmp/mlp"); MLPDiffusionPrior.from_pretrained("/tmp/mlp")
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from optimizer.errors import PriorError
from optimizer.priors.files import load_config_and_weights, save_config_and_weights
from optimizer.priors.gaussian_mixture import make_alphas_cumprod, replica_groups

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CLASS_NAME = "MLPDiffusionPrior"


class MLPDiffusionConfig(BaseModel):
    """Architecture and noise schedule of an ``MLPDiffusionPrior`` (frozen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dim: int = Field(ge=1, description="d, the design dimension")
    hidden: int = Field(default=256, ge=8)
    num_blocks: int = Field(default=3, ge=1)
    time_embed_dim: int = Field(default=64, ge=4)
    num_train_timesteps: int = Field(default=1000, ge=2)
    # "linear" by default: squaredcos_cap_v2 ends at ā ≈ 1e-9 (capped beta), where x̂0 at the
    # first sampling step amplifies the network's error by 1/√ā.
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = Field(default=1e-4, gt=0)
    beta_end: float = Field(default=0.02, gt=0)


def timestep_embedding(t: Tensor, dim: int, num_train_timesteps: int) -> Tensor:
    """`B`-dim timesteps → `B x dim` sinusoidal features of `t / T_train` (frequencies 1..1e3)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), half, device=t.device, dtype=torch.float32))
    arg = (t.float() / num_train_timesteps)[:, None] * freqs[None, :] * (2 * math.pi)
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class _Block(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h)) + emb))


class EpsilonMLP(nn.Module):
    """`ε_θ(x, t)`: `B x d` and `B` timesteps → `B x d`."""

    def __init__(self, config: MLPDiffusionConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.time_mlp = nn.Sequential(
            nn.Linear(c.time_embed_dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)
        )
        self.inp = nn.Linear(c.dim, c.hidden)
        self.blocks = nn.ModuleList(_Block(c.hidden) for _ in range(c.num_blocks))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        c = self.config
        emb = self.time_mlp(timestep_embedding(t, c.time_embed_dim, c.num_train_timesteps).to(x.dtype))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.out_norm(h)))


def alphas_cumprod_of(config: MLPDiffusionConfig) -> Tensor:
    """`ā_t` (`T_train`, float64) of the config's schedule, as diffusers' ``DDPMScheduler``."""
    return make_alphas_cumprod(config.num_train_timesteps, config.beta_schedule,
                               config.beta_start, config.beta_end)


class MLPDiffusionPrior:
    r"""An unconditional VP diffusion prior over `d`-dim vectors (``DiffusionPrior`` protocol).

    Args:
        config: architecture and schedule.
        net: the `ε`-network (default: freshly initialized from ``config``).
        data_mean, data_std: `d`-dim Tensors `μ`, `s` of the design standardization
            (default 0 and 1: diffusion space = design space).
        device, dtype: where and in which dtype parameters and particles live (float32, CPU).

    Steps of ``predict_noise``: 1. broadcast the integer `t` to the `B` rows; 2. run the MLP.
    ``decode`` is `μ + s ⊙ x0`; ``encode`` its inverse (for training data).
    """

    def __init__(
        self,
        config: MLPDiffusionConfig,
        net: EpsilonMLP | None = None,
        *,
        data_mean: Tensor | None = None,
        data_std: Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.float32
        self.net = (net or EpsilonMLP(config)).to(device=self.device, dtype=self.dtype)
        d = config.dim
        mean = torch.zeros(d) if data_mean is None else torch.as_tensor(data_mean)
        std = torch.ones(d) if data_std is None else torch.as_tensor(data_std)
        if mean.shape != (d,) or std.shape != (d,):
            raise PriorError(
                f"data_mean / data_std have shapes {tuple(mean.shape)} / {tuple(std.shape)}; "
                f"both must be ({d},) to match config.dim={d}"
            )
        if not bool((std > 0).all()):
            raise PriorError("data_std has entries <= 0; pass a positive per-dimension scale")
        self.data_mean = mean.to(self.device, self.dtype)
        self.data_std = std.to(self.device, self.dtype)
        self.latent_shape: tuple[int, ...] = (d,)
        self.alphas_cumprod = alphas_cumprod_of(config).to(self.device, self.dtype)

    # -- DiffusionPrior protocol -------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        """`T_train`."""
        return self.config.num_train_timesteps

    def predict_noise(self, x: Tensor, t: int, context: Tensor | None = None) -> Tensor:
        """`ε̂(x_t, t)`: `B x d` → `B x d`, differentiable with respect to ``x``."""
        t = int(t)
        if not 0 <= t < self.num_train_timesteps:
            raise PriorError(f"t={t} is outside [0, {self.num_train_timesteps}); pass a training timestep")
        if x.dim() != 2 or x.shape[-1] != self.config.dim:
            raise PriorError(f"x has shape {tuple(x.shape)}; expected B x {self.config.dim}")
        steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return self.net(x, steps)

    def decode(self, x0: Tensor) -> Tensor:
        """Designs `μ + s ⊙ x0` (`B x d` → `B x d`, differentiable)."""
        return self.data_mean.to(x0.dtype) + self.data_std.to(x0.dtype) * x0

    def encode(self, designs: Tensor) -> Tensor:
        """Inverse of ``decode``: `(designs - μ) / s`."""
        designs = designs.to(self.device, self.dtype)
        return (designs - self.data_mean) / self.data_std

    def prepare_context(
        self, conditions: Sequence[Any] | None, num_particles: int
    ) -> tuple[int, Tensor | None]:
        """`G = len(conditions)` unconditional replicas (or 1 for None); no context tensor."""
        return replica_groups(conditions)

    # -- persistence --------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (weights + standardization)."""
        cfg = {"_class_name": CLASS_NAME, **self.config.model_dump()}
        state = {**self.net.state_dict(), "data_mean": self.data_mean, "data_std": self.data_std}
        state = {k: v.to(torch.float32) for k, v in state.items()}
        save_config_and_weights(path, CONFIG_NAME, cfg, WEIGHTS_NAME, state)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> MLPDiffusionPrior:
        """Load a frozen prior from a folder written by ``save_pretrained``."""
        path = Path(path)
        cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        not_a_folder = PriorError(
            f"{path} is not an MLPDiffusionPrior folder: it needs {CONFIG_NAME} and "
            f"{WEIGHTS_NAME} (written by MLPDiffusionPrior.save_pretrained)"
        )
        raw, state = load_config_and_weights(path, CONFIG_NAME, WEIGHTS_NAME,
                                             missing=lambda _: not_a_folder)
        if raw.pop("_class_name", None) != CLASS_NAME:
            raise PriorError(f"{cfg_file} does not name _class_name={CLASS_NAME!r}")
        config = MLPDiffusionConfig(**raw)
        mean, std = state.pop("data_mean"), state.pop("data_std")
        net = EpsilonMLP(config)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise PriorError(f"{weights} does not match {cfg_file}: {exc}") from exc
        net.eval().requires_grad_(False)
        return cls(config, net, data_mean=mean, data_std=std, device=device, dtype=dtype)
