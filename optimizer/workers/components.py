"""Glue between a campaign config and the components it names: prior + feature map, surrogate.

Kept in one module so the worker and the driver build them the same way:

- :func:`load_prior_bundle` — the prior (bundled name or local path) and its feature map φ;
- :func:`rebuild_reward` — the SMC reward `r̂ = μ(φ(x)) + β σ(φ(x))` rebuilt from the surrogate's
  state bytes and its training arrays (no pickle, no refit);
- :class:`SurrogateAdapter` — fit / screen / state for the driver.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from optimizer.errors import PreflightError
from optimizer.surrogate.config import SurrogateConfig


@dataclass
class PriorBundle:
    """A loaded prior with its feature map φ (`B x *design_shape` → `B x k`), an
    ``optimizer.features.FeatureMap`` shared by candidate logging and the surrogate."""

    name: str
    prior: Any
    feature_map: Any

    def features(self, designs: Tensor) -> Tensor:
        """φ(designs) as a `B x k` Tensor."""
        out = self.feature_map(designs)
        return out.reshape(out.shape[0], -1)

    def features_np(self, designs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(designs), dtype=self.prior.dtype, device=self.prior.device)
            return self.features(t).detach().cpu().double().numpy()


def known_priors() -> list[str]:
    """Names of the bundled priors."""
    from optimizer.priors.registry import BUNDLED

    return sorted(BUNDLED)


def load_prior_bundle(name: str, feature_map: str = "prior", *,
                      device: torch.device | str = "cpu") -> PriorBundle:
    """Load the prior named in the config (bundled name or path) and the configured feature map.

    ``feature_map`` (the config's ``feature_map.kind``): ``"prior"`` (the prior's own map: the
    digit embedding for "digits", identity for vector priors) or ``"identity"`` (flattened designs).
    """
    from optimizer.features import IdentityFeatures
    from optimizer.priors.registry import load_feature_map, load_prior

    prior = load_prior(name, device=device)
    kind = feature_map
    if kind == "prior":
        fm = load_feature_map(name, device=device)
    elif kind == "identity":
        fm = IdentityFeatures()
    else:
        raise PreflightError(
            f"feature_map.kind = {kind!r} is not supported by the loop; use \"prior\" (the prior's "
            "own feature map) or \"identity\"")
    return PriorBundle(name=name, prior=prior, feature_map=fm)


def zero_reward(x: Tensor) -> Tensor:
    """`r(x) = 0`: the tilted target is the plain prior (round 0)."""
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


zero_reward.differentiable = False  # type: ignore[attr-defined]


def rebuild_reward(bundle: PriorBundle, state: bytes, X: np.ndarray | None, Y: np.ndarray | None,
                   Yvar: np.ndarray | None, *, beta: float) -> Callable[[Tensor], Tensor]:
    """The SMC reward of a surrogate rebuilt from its state bytes and training data (no refit)."""
    from optimizer.surrogate.gp import Surrogate
    from optimizer.surrogate.state import SurrogateState

    model = Surrogate.from_state(SurrogateState.from_bytes(state), _t(X), _t(Y), _t(Yvar),
                                 feature_map=bundle.feature_map)
    reward = model.reward(beta=beta)
    device = torch.device(getattr(bundle.prior, "device", "cpu"))
    if device.type == "cpu":
        return reward

    # The GP stays on the CPU (small, float64); particles on an accelerator cross over and back,
    # and autograd carries the guidance gradient through both copies.
    def on_device(x: Tensor) -> Tensor:
        return reward(x.to("cpu")).to(x.device)

    on_device.differentiable = reward.differentiable  # type: ignore[attr-defined]
    return on_device


def _t(a: np.ndarray | None) -> Tensor | None:
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=torch.float64)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, then restore the previous count.

    The surrogate's matrices are small (n ≤ a few thousand): with 2 threads on 2 cores shared with
    the SMC workers (or other load), every small op waits at a thread barrier for a descheduled
    sibling; measured 0.7 s vs 7 s for one q=16 screening of 1,024 particles (bench/loop_overhead.py).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Screened:
    """Screening outcome for all `M` candidates (primary objective's mean / std)."""

    selected: np.ndarray
    acquisition: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    excluded: np.ndarray
    note: str = ""


class SurrogateAdapter:
    """Fit, screen and serialize the campaign's surrogate in the driver process.

    Args:
        bundle: the prior bundle (for its feature maps).
        config: the loop's surrogate config (``CampaignConfig.surrogate_for_loop()``: β, the
            acquisition, torch threads for fit and screening — see :func:`torch_threads` — the
            objectives' directions and the campaign seed).
    """

    def __init__(self, bundle: PriorBundle, config: SurrogateConfig) -> None:
        self.bundle = bundle
        self.config = config
        self.acquisition = config.acquisition
        self.threads = config.threads

    def fit(self, data: Any, *, previous_state: bytes | None = None) -> tuple[Any, bytes, dict[str, Any]]:
        """Fit on ``data`` (``TrainingData``), warm-started from ``previous_state`` when it fits;
        return (model, state bytes, JSON summary for the round row)."""
        from optimizer.errors import SurrogateError
        from optimizer.surrogate.gp import Surrogate
        from optimizer.surrogate.state import SurrogateState

        previous = None
        if previous_state is not None:
            try:
                previous = SurrogateState.from_bytes(previous_state)
            except SurrogateError:
                previous = None  # an unreadable old state only costs the warm start
        with torch_threads(self.threads):
            model = Surrogate.fit(_t(data.X), _t(data.Y), _t(data.Yvar),
                                  feature_map=self.bundle.feature_map, config=self.config,
                                  previous=previous)
        blob = model.state().to_bytes()
        info = model.fit_info
        meta = {"observations": info.num_observations, "fit_ok": list(info.fit_ok),
                "warm_started": info.warm_started, "fit_seconds": info.seconds,
                "state_bytes": len(blob), "messages": [m for m in info.messages if m][:3]}
        return model, blob, meta

    def screen(self, model: Any, designs: np.ndarray, q: int, *, pending: np.ndarray,
               observed: np.ndarray, seed: int) -> Screened:
        """Pick up to q of ``designs`` by the acquisition; values for all candidates."""
        from optimizer.surrogate.screening import screen

        with torch_threads(self.threads):
            res = screen(model, _t(designs), q,
                         pending=_t(pending) if pending.ndim > 1 and len(pending) else None,
                         observed=_t(observed) if observed.ndim > 1 and len(observed) else None,
                         acquisition=self.acquisition, seed=int(seed) % (2**31))
        return Screened(selected=res.selected.numpy().astype(np.int64),
                        acquisition=_np(res.acq_values), mean=_np(res.mean[:, 0]),
                        std=_np(res.std[:, 0]), excluded=res.excluded.numpy().astype(bool),
                        note=res.note)

    def features(self, designs: np.ndarray) -> np.ndarray:
        with torch_threads(self.threads):
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
