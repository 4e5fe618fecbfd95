r"""Pieces shared by the diffusers-backed priors: folder checks, schedule loading, ε conversion.

A diffusers UNet may be trained to predict the noise `ε`, the clean sample `x0` ("sample") or the
velocity `v = sqrt(ā_t) ε − sqrt(1 − ā_t) x0` ("v_prediction"). The sampler speaks ε only, so
every output is converted with the VP identity `x_t = sqrt(ā_t) x0 + sqrt(1 − ā_t) ε`:

    `ε = (x_t − sqrt(ā_t) x0) / sqrt(1 − ā_t)`   (x0-prediction)
    `ε = sqrt(ā_t) v + sqrt(1 − ā_t) x_t`         (v-prediction)

Both maps are affine in the model output with coefficients summing to one across a classifier-free
guidance mix, so guidance may be applied before or after the conversion with the same result.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import diffusers
import torch
from torch import Tensor, nn

from optimizer.errors import PriorError

PredictionType = Literal["epsilon", "sample", "v_prediction"]
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample", "v_prediction")

# "owner/name" with the characters the hub allows; anything else must be a local folder.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_source(path: str | Path, required: Mapping[str, tuple[str, ...]], layout: str) -> str:
    """Check a diffusers folder before loading, or accept a hub id.

    Args:
        path: local folder, or a hub id ``"owner/name"`` when no such local path exists.
        required: subfolder name -> file names of which at least one must exist in it.
        layout: one line describing the expected layout, quoted in error messages.

    Returns:
        The string to hand to ``from_pretrained``.

    Raises:
        PriorError: the local folder or one of its subfolders / files is missing.
    """
    local = Path(path).expanduser()
    if not local.exists():
        if isinstance(path, str) and _HUB_ID.match(path) and not path.startswith((".", "~")):
            return path  # a hub id; the hub call itself reports network / auth problems
        raise PriorError(
            f"prior path {str(path)!r} does not exist: pass a local diffusers folder ({layout}) "
            "or a hub id of the form 'owner/name'"
        )
    if not local.is_dir():
        raise PriorError(f"prior path {str(local)!r} is a file; pass the folder that holds {layout}")
    for sub, files in required.items():
        folder = local / sub
        if not folder.is_dir():
            raise PriorError(
                f"prior folder {str(local)!r} has no subfolder {sub + '/'!r}; expected {layout} "
                f"(save one with save_pretrained, or point at the pipeline's root folder)"
            )
        if files and not any((folder / f).is_file() for f in files):
            raise PriorError(
                f"prior subfolder {str(folder)!r} holds none of {list(files)}; it is not a "
                f"saved diffusers/transformers component (expected {layout})"
            )
    return str(local)


def load_error(kind: str, path: str | Path, layout: str, err: Exception) -> PriorError:
    """A loading failure that says whether ``path`` was read as a local folder or a hub id."""
    where = (
        f"local folder {str(path)!r}" if Path(path).expanduser().exists()
        else f"hub id {str(path)!r} (no such local folder; the hub may be unreachable)"
    )
    return PriorError(f"could not load a {kind} prior from the {where}; expected {layout}: {err}")


def load_scheduler(source: str) -> Any:
    """Load the noise scheduler of ``source/scheduler`` with the class its config names.

    Any diffusers scheduler that defines ``alphas_cumprod`` (DDPM, DDIM, PNDM, Euler, DPM-Solver...)
    gives the same VP schedule; its stepping rule is not used (the sampler has its own).
    """
    config = diffusers.DDPMScheduler.load_config(source, subfolder="scheduler")
    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise PriorError(
            f"scheduler config of {source!r} names class {name!r}, unknown to diffusers "
            f"{diffusers.__version__}; set '_class_name' to 'DDPMScheduler' in scheduler_config.json"
        )
    return cls.from_config(config)


def schedule_of(scheduler: Any, *, where: str) -> Tensor:
    """The `(T_train,)` ``alphas_cumprod`` of a diffusers scheduler, as float64 on the CPU."""
    abar = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(abar, Tensor) or abar.ndim != 1 or abar.numel() < 2:
        raise PriorError(
            f"scheduler {type(scheduler).__name__} of {where} has no 1-D 'alphas_cumprod': it is "
            "not a variance-preserving (DDPM-family) schedule; use a DDPM/DDIM scheduler config"
        )
    abar = abar.detach().to("cpu", torch.float64)
    if not bool(((abar > 0) & (abar < 1)).all()) or not bool((abar[1:] <= abar[:-1]).all()):
        raise PriorError(
            f"alphas_cumprod of {where} must lie in (0, 1) and decrease in t; "
            f"got range [{abar.min().item():.3g}, {abar.max().item():.3g}]"
        )
    return abar


def prediction_type_of(scheduler: Any, override: str | None, *, where: str) -> str:
    """The UNet's output parameterization: ``override`` or the scheduler config's, validated."""
    kind = override or getattr(scheduler.config, "prediction_type", None) or "epsilon"
    if kind not in PREDICTION_TYPES:
        raise PriorError(
            f"prediction_type {kind!r} of {where} is not supported; expected one of "
            f"{list(PREDICTION_TYPES)} (set 'prediction_type' in scheduler_config.json)"
        )
    return kind


def to_epsilon(output: Tensor, x: Tensor, alpha_bar: float, prediction_type: str) -> Tensor:
    """Convert a UNet output in ``prediction_type`` parameterization to `ε̂(x_t)`.

    Args:
        output: `B x *latent_shape`-dim Tensor, the model output (ε, x0 or v).
        x: `B x *latent_shape`-dim Tensor `x_t` the model saw.
        alpha_bar: `ā_t` as a Python float (kept on the host: no device sync per step).
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Returns:
        `B x *latent_shape`-dim Tensor `ε̂`, differentiable in both inputs.
    """
    if prediction_type == "epsilon":
        return output
    a, s = alpha_bar**0.5, (1.0 - alpha_bar) ** 0.5
    if prediction_type == "sample":
        return (x - a * output) / s
    if prediction_type == "v_prediction":
        return a * output + s * x
    raise PriorError(f"prediction_type {prediction_type!r} not in {list(PREDICTION_TYPES)}")


_M = TypeVar("_M", bound=nn.Module)


def freeze(module: _M, device: torch.device, dtype: torch.dtype) -> _M:
    """Move a pretrained component, switch it to eval mode, and stop parameter gradients.

    Gradients still flow to the *inputs* (the sampler's guidance needs `∇_x r(x̂0(x))`).
    """
    module.to(device=device, dtype=dtype)
    module.eval()
    module.requires_grad_(False)
    return module


def resolve_device_dtype(
    module: nn.Module, device: torch.device | str | None, dtype: torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    """``device`` / ``dtype`` or, when None, those of ``module``'s first parameter."""
    first = next(module.parameters())
    return torch.device(device) if device is not None else first.device, dtype or first.dtype


def check_timestep(t: int, num_train_timesteps: int) -> int:
    """Validate a training timestep index and return it as a Python int.

    Pass a Python int: a 0-dim device tensor works but costs one host sync.
    """
    step = int(t)
    if not 0 <= step < num_train_timesteps:
        raise PriorError(
            f"timestep t={step} outside [0, {num_train_timesteps}): pass a training timestep index"
        )
    return step


def check_rows(x: Tensor, latent_shape: tuple[int, ...]) -> None:
    """Raise unless ``x`` is a `B x *latent_shape`-dim Tensor."""
    if tuple(x.shape[1:]) != latent_shape:
        raise PriorError(
            f"x has shape {tuple(x.shape)}; expected (B, *latent_shape) = (B, {latent_shape})"
        )
