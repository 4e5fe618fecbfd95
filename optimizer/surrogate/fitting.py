"""Building blocks of the GP fit: the training subset, fixed input bounds, one ``SingleTaskGP``
with its transforms, hyperparameter copies and the marginal-likelihood optimization.

Used by ``optimizer.surrogate.gp.Surrogate`` (fit and rebuild from a state); functions, no state.

>>> idx = subset_indices(score, 256, seed=0)           # best quarter + seeded random rest
>>> model = build_gp(Z[idx], y[idx], None, input_bounds(Z[idx]))
>>> ok, msg = optimize_mll(model, SurrogateConfig())
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.state import HYPER_PREFIXES


def subset_indices(Yc: Tensor, size: int, seed: int) -> Tensor:
    """Sorted indices: the best ``size // 4`` rows by ``Yc`` (`n`) plus a seeded random rest."""
    n = Yc.shape[0]
    if n <= size:
        return torch.arange(n)
    n_top = size // 4
    top = torch.argsort(Yc.cpu(), descending=True, stable=True)[:n_top]
    rest_mask = torch.ones(n, dtype=torch.bool)
    rest_mask[top] = False
    rest = torch.nonzero(rest_mask).flatten()
    g = torch.Generator().manual_seed(seed)
    pick = rest[torch.randperm(rest.numel(), generator=g)[: size - n_top]]
    return torch.sort(torch.cat([top, pick])).values


def input_bounds(Z: Tensor) -> Tensor:
    """`2 x k` box of the features ``Z`` (`n x k`): the ``Normalize`` bounds, fixed at fit time."""
    lo, hi = Z.min(dim=0).values, Z.max(dim=0).values
    hi = torch.where(hi - lo > 1e-12, hi, lo + 1.0)  # constant feature: unit range, no 0/0
    return torch.stack([lo, hi])


def build_gp(Z: Tensor, y: Tensor, yvar: Tensor | None, bounds: Tensor) -> SingleTaskGP:
    """A ``SingleTaskGP`` on features ``Z`` (`n x k`) and one outcome ``y`` (`n x 1`), inputs
    normalized by the fixed ``bounds``, outcome standardized; ``yvar`` is the fixed noise or None."""
    with warnings.catch_warnings():
        # constant outcomes trip BoTorch's "not standardized" check; Standardize handles them
        warnings.simplefilter("ignore", InputDataWarning)
        return SingleTaskGP(
            Z, y, train_Yvar=yvar,
            input_transform=Normalize(d=Z.shape[-1], bounds=bounds),
            outcome_transform=Standardize(m=1),
        )


def hyper_state(model: SingleTaskGP) -> dict[str, Tensor]:
    """Copies of ``model``'s hyperparameter entries (keys starting with ``HYPER_PREFIXES``)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k.startswith(HYPER_PREFIXES)}


def load_hyper(model: SingleTaskGP, hyper: dict[str, Tensor], strict: bool = False) -> bool:
    """Copy hyperparameters into ``model``; False (model untouched) when shapes do not match."""
    own = model.state_dict()
    keys = [k for k in own if k.startswith(HYPER_PREFIXES)]
    if set(keys) != set(hyper) or any(own[k].shape != hyper[k].shape for k in keys):
        if strict:
            raise SurrogateError("internal: hyperparameters do not fit the conditioning model")
        return False
    # keep_transforms=False: BoTorch would otherwise un- and re-standardize the targets, which
    # changes them in the last bit and breaks bit-identical rebuilds from a state.
    model.load_state_dict({k: hyper[k].to(own[k]) for k in keys}, strict=False,
                          keep_transforms=False)
    return True


def optimize_mll(model: SingleTaskGP, cfg: SurrogateConfig) -> tuple[bool, str]:
    """Maximize the marginal likelihood; on failure keep the starting point and say why."""
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BoTorch's input-scaling and retry chatter
            opts: dict[str, Any] = {"options": {"maxiter": cfg.fit_maxiter}}
            if cfg.fit_timeout_s is not None:
                opts["timeout_sec"] = cfg.fit_timeout_s
            fit_gpytorch_mll(mll, optimizer_kwargs=opts)
        return True, "ok"
    except (ModelFittingError, RuntimeError, ValueError) as exc:
        msg = (f"marginal-likelihood fit failed ({type(exc).__name__}: {exc}); kept the starting "
               "hyperparameters (warm start or defaults)")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return False, msg
