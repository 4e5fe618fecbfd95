"""Glue between a campaign config and the components it names: prior + feature map, surrogate.

Kept in one module so the worker and the driver build them the same way:

- :func:`load_prior_bundle` — the prior (bundled name or local path) and its feature map φ;
- :func:`rebuild_reward` — the SMC reward `r̂ = μ(φ(x)) + β σ(φ(x))` rebuilt from the surrogate's
  state bytes and its training arrays (no pickle, no refit);
- :class:`SurrogateAdapter` — fit / screen / state for the driver.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optimizer.campaign.errors import PreflightError


@dataclass
class PriorBundle:
    """A loaded prior with its feature map (`B x *design_shape` → `B x k`)."""

    name: str
    prior: Any
    feature_map: Any
    differentiable: bool = True

    def features(self, designs: Tensor) -> Tensor:
        """φ(designs) as a `B x k` Tensor."""
        out = self.feature_map(designs) if self.feature_map is not None else designs
        return out.reshape(out.shape[0], -1)

    def features_np(self, designs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(designs), dtype=self.prior.dtype, device=self.prior.device)
            return self.features(t).detach().cpu().double().numpy()


def known_priors() -> list[str]:
    """Names of the bundled priors."""
    from optimizer.priors.registry import BUNDLED

    return sorted(BUNDLED)


def load_prior_bundle(name: str, feature_map: dict[str, Any], *, device: torch.device | str = "cpu") -> PriorBundle:
    """Load the prior named in the config (bundled name or path) and the configured feature map.

    ``feature_map.kind``: ``"prior"`` (the prior's own map: the digit embedding for "digits",
    identity for vector priors) or ``"identity"`` (flattened designs).
    """
    from optimizer.priors.registry import FlattenFeatures, load_feature_map, load_prior

    prior = load_prior(name, device=device)
    kind = feature_map.get("kind", "prior")
    if kind == "prior":
        fm = load_feature_map(name, device=device)
    elif kind == "identity":
        with torch.no_grad():
            dim = prior.decode(torch.zeros(1, *prior.latent_shape, device=prior.device,
                                           dtype=prior.dtype)).flatten(1).shape[1]
        fm = FlattenFeatures(dim)
    else:
        raise PreflightError(
            f"feature_map.kind = {kind!r} is not supported by the loop; use \"prior\" (the prior's "
            "own feature map) or \"identity\"")
    fm.requires_grad_(False)
    return PriorBundle(name=name, prior=prior, feature_map=fm, differentiable=True)


def zero_reward(x: Tensor) -> Tensor:
    """`r(x) = 0`: the tilted target is the plain prior (round 0)."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


zero_reward.differentiable = False  # type: ignore[attr-defined]


def rebuild_reward(bundle: PriorBundle, state: bytes, surrogate_config: dict[str, Any],
                   X: np.ndarray | None, Y: np.ndarray | None, Yvar: np.ndarray | None, *,
                   beta: float) -> Callable[[Tensor], Tensor]:
    """The SMC reward of a surrogate rebuilt from its state bytes and training data."""
    from optimizer.surrogate import Surrogate

    model = Surrogate.from_state(state, _t(X), _t(Y), _t(Yvar), feature_map=bundle.feature_map)
    return model.reward(beta=beta)


def _t(a: np.ndarray | None) -> Tensor | None:
    return None if a is None else torch.as_tensor(a, dtype=torch.float64)


class SurrogateAdapter:
    """Fit, screen and serialize the campaign's surrogate in the driver process.

    Args:
        bundle: the prior bundle (for its feature map).
        options: the campaign's ``[surrogate]`` table (beta, acquisition, options).
    """

    def __init__(self, bundle: PriorBundle, options: dict[str, Any]) -> None:
        self.bundle = bundle
        self.options = dict(options)

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def fit(self, data: Any, *, previous_state: bytes | None = None) -> tuple[Any, bytes, dict[str, Any]]:
        """Fit on ``data`` (``TrainingData``); return (model, state bytes, JSON summary)."""
        from optimizer.surrogate import Surrogate

        model = Surrogate.fit(_t(data.X), _t(data.Y), _t(data.Yvar), feature_map=self.bundle.feature_map,
                              previous=previous_state)
        state = model.to_bytes()
        return model, state, {"n": int(data.n), "bytes": len(state)}

    def screen(self, model: Any, designs: np.ndarray, q: int, *, pending: np.ndarray,
               observed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pick q of ``designs``; return (selected, acquisition, mean, std) for all candidates."""
        from optimizer.surrogate import screen

        res = screen(model, _t(designs), q, pending=_t(pending) if len(pending) else None,
                     observed=_t(observed) if len(observed) else None)
        return (np.asarray(res.selected), _np(res.acquisition), _np(res.mean), _np(res.std))

    def features(self, designs: np.ndarray) -> np.ndarray:
        return self.bundle.features_np(designs)


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy().reshape(-1) if isinstance(t, Tensor) else np.asarray(t, dtype=float)


def prior_exists(name: str) -> bool:
    """A bundled name or an existing folder."""
    from optimizer.errors import PriorError
    from optimizer.priors.registry import resolve

    try:
        resolve(name)
    except PriorError:
        return False
    return True
