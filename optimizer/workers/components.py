"""Glue between a campaign config and the components it names: prior + feature map, reward.

Kept in one module so the worker and the driver build them the same way:

- :func:`load_prior_bundle` — the prior (bundled name or local path) and its feature map φ;
- :func:`load_feature_bundle` — the feature map φ alone (the driver: no diffusion prior loaded);
- :func:`rebuild_reward` — the SMC reward `r̂ = μ(φ(x)) + β σ(φ(x))` rebuilt from the surrogate's
  state bytes and its training arrays (no pickle, no refit).

The driver's surrogate (fit / screen / state) is ``optimizer.campaign.surrogate.SurrogateAdapter``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from optimizer.errors import PreflightError


@dataclass
class PriorBundle:
    """A loaded prior with its feature map φ (`B x *design_shape` → `B x k`), an
    ``optimizer.features.FeatureMap`` shared by candidate logging and the surrogate.

    ``prior`` is None in a features-only bundle (:func:`load_feature_bundle`); designs are then
    fed to φ as float32 on the CPU (the bundled priors' dtype and the driver's device).
    """

    name: str
    prior: Any
    feature_map: Any

    def features(self, designs: Tensor) -> Tensor:
        """φ(designs) as a `B x k` Tensor."""
        out = self.feature_map(designs)
        return out.reshape(out.shape[0], -1)

    def features_np(self, designs: np.ndarray) -> np.ndarray:
        """φ(designs) as a float64 `B x k` array, designs cast to the prior's dtype and device."""
        dtype = getattr(self.prior, "dtype", torch.float32)
        device = getattr(self.prior, "device", "cpu")
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(designs), dtype=dtype, device=device)
            return self.features(t).detach().cpu().double().numpy()


def load_prior_bundle(name: str, feature_map: str = "prior", *,
                      device: torch.device | str = "cpu") -> PriorBundle:
    """Load the prior named in the config (bundled name or path) and the configured feature map.

    ``feature_map`` (the config's ``feature_map.kind``): ``"prior"`` (the prior's own map: the
    digit embedding for "digits", identity for vector priors) or ``"identity"`` (flattened designs).
    """
    from optimizer.priors.registry import load_prior

    prior = load_prior(name, device=device)
    return PriorBundle(name=name, prior=prior, feature_map=_feature_map(name, feature_map, device))


def load_feature_bundle(name: str, feature_map: str = "prior", *,
                        device: torch.device | str = "cpu") -> PriorBundle:
    """The configured feature map of prior ``name`` without the diffusion prior (``prior=None``):
    what the driver needs to fit, screen and log candidates. Same arguments and errors as
    :func:`load_prior_bundle` (an unknown prior name raises ``PriorError``)."""
    from optimizer.priors.registry import resolve

    resolve(name)
    return PriorBundle(name=name, prior=None, feature_map=_feature_map(name, feature_map, device))


def _feature_map(name: str, kind: str, device: torch.device | str) -> Any:
    from optimizer.features import IdentityFeatures
    from optimizer.priors.registry import load_feature_map

    if kind == "prior":
        return load_feature_map(name, device=device)
    if kind == "identity":
        return IdentityFeatures()
    raise PreflightError(
        f"feature_map.kind = {kind!r} is not supported by the loop; use \"prior\" (the prior's "
        "own feature map) or \"identity\"")


def zero_reward(x: Tensor) -> Tensor:
    """`r(x) = 0`: the tilted target is the plain prior (round 0)."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


zero_reward.differentiable = False  # type: ignore[attr-defined]
# a plain-prior round: DAS skips decoding x̂0 and calling the reward at every step (bit-identical)
zero_reward.constant_value = 0.0  # type: ignore[attr-defined]


def rebuild_reward(bundle: PriorBundle, state: bytes, X: np.ndarray, Y: np.ndarray,
                   Yvar: np.ndarray | None, *, beta: float,
                   alpha: float | None = None,
                   weights: tuple[float, ...] | None = None) -> Callable[[Tensor], Tensor]:
    """The SMC reward of a surrogate rebuilt from its state bytes and training data (no refit);
    ``alpha`` weighs `log PoF` when the state has outcome-constraint columns (``reward.py``);
    ``weights``: the chunk's scalarization weights (ParEGO), None for the config's."""
    from optimizer.surrogate.gp import Surrogate
    from optimizer.surrogate.state import SurrogateState

    model = Surrogate.from_state(SurrogateState.from_bytes(state), as_tensor(X), as_tensor(Y),
                                 as_tensor(Yvar), feature_map=bundle.feature_map)
    reward = model.reward(beta=beta, alpha=alpha, weights=weights)
    device = torch.device(getattr(bundle.prior, "device", "cpu"))
    if device.type == "cpu":
        return reward

    # The GP stays on the CPU (small, float64); particles on an accelerator cross over and back,
    # and autograd carries the guidance gradient through both copies.
    def on_device(x: Tensor) -> Tensor:
        return reward(x.to("cpu")).to(x.device)

    on_device.differentiable = reward.differentiable  # type: ignore[attr-defined]
    return on_device


@overload
def as_tensor(a: np.ndarray) -> Tensor: ...
@overload
def as_tensor(a: None) -> None: ...
@overload
def as_tensor(a: np.ndarray | None) -> Tensor | None: ...
def as_tensor(a: np.ndarray | None) -> Tensor | None:
    """A float64 Tensor of a numpy array (None stays None): the surrogate's training arrays."""
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float64)
