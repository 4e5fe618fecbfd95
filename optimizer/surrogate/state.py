"""Surrogate state ↔ bytes, without pickle: one safetensors blob whose header carries JSON.

The state holds what a fit *learned*: every GP's ``state_dict`` (hyperparameters, fixed input
bounds, outcome standardization), which observations the posterior conditions on, the feature map
(record + tensors) and the config. The training data itself comes from storage; a fingerprint
(SHA-256) checks that the rebuild gets the same data, so the rebuilt posterior mean and variance
are identical to the saved ones.

Layout: tensors ``model.{j}.{key}``, ``cond_idx``, ``bounds``, ``features.{name}``; metadata key
``tiltloop.surrogate`` = JSON ``{"version", "config", "design_shape", "num_objectives",
"num_observations", "fingerprint", "has_yvar", "feature_map", "fit_info"}``.
"""
from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gpytorch
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.features import FeatureMap, feature_map_from_record
from optimizer.surrogate.validation import check_training_data, fingerprint

if TYPE_CHECKING:
    from optimizer.surrogate.gp import Surrogate

STATE_VERSION = 1
_META_KEY = "tiltloop.surrogate"


@dataclass(frozen=True)
class SurrogateState:
    """A fitted surrogate's state: JSON-able ``meta`` and named ``tensors``.

    >>> blob = sur.state().to_bytes()                       # store in the DB / send to a worker
    >>> sur2 = Surrogate.from_state(SurrogateState.from_bytes(blob), X, Y, Yvar)
    """

    meta: dict[str, Any]
    tensors: dict[str, Tensor] = field(repr=False)

    def to_bytes(self) -> bytes:
        """Serialize to safetensors bytes (tensors on CPU; JSON metadata in the header)."""
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.tensors.items()}
        return st_save(tensors, metadata={_META_KEY: json.dumps(self.meta, sort_keys=True)})

    @classmethod
    def from_bytes(cls, blob: bytes) -> SurrogateState:
        """Parse bytes written by ``to_bytes``; a foreign or corrupt blob raises ``SurrogateError``."""
        try:
            (header_len,) = struct.unpack("<Q", blob[:8])
            header = json.loads(blob[8:8 + header_len])
            meta = json.loads(header["__metadata__"][_META_KEY])
            tensors = dict(st_load(blob))
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not our blob"
            raise SurrogateError(
                f"surrogate state blob ({len(blob)} bytes) is not a tiltloop surrogate state "
                f"({type(exc).__name__}: {exc}); refit with Surrogate.fit"
            ) from exc
        if meta.get("version") != STATE_VERSION:
            raise SurrogateError(
                f"surrogate state version {meta.get('version')!r} is not supported (this build "
                f"reads version {STATE_VERSION}); refit with Surrogate.fit on the stored data"
            )
        return cls(meta=meta, tensors=tensors)

    @property
    def config(self) -> SurrogateConfig:
        """The ``SurrogateConfig`` the state was fitted with."""
        return SurrogateConfig.model_validate(self.meta["config"])

    def model_state(self, j: int) -> dict[str, Tensor]:
        """The ``state_dict`` of objective ``j``'s GP."""
        prefix = f"model.{j}."
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    def hyperparameters(self) -> list[dict[str, Tensor]]:
        """Per objective, the hyperparameter entries only (what a warm start copies)."""
        from optimizer.surrogate.gp import _HYPER_PREFIXES

        return [{k: v for k, v in self.model_state(j).items() if k.startswith(_HYPER_PREFIXES)}
                for j in range(int(self.meta["num_objectives"]))]


def capture(sur: Surrogate) -> SurrogateState:
    """Build the state of a fitted ``Surrogate``."""
    record, ftensors = sur.feature_map.to_record()
    tensors: dict[str, Tensor] = {"cond_idx": sur.cond_idx.to(torch.int64),
                                  "bounds": sur.bounds}
    for j, model in enumerate(sur.models):
        for k, v in model.state_dict().items():
            tensors[f"model.{j}.{k}"] = v
    for k, v in ftensors.items():
        tensors[f"features.{k}"] = v
    meta = {
        "version": STATE_VERSION,
        "config": sur.config.model_dump(mode="json"),
        "design_shape": list(sur.design_shape),
        "num_objectives": sur.num_objectives,
        "num_observations": int(sur.train_X.shape[0]),
        "fingerprint": fingerprint(sur.train_X, sur.train_Y, sur.train_Yvar),
        "has_yvar": sur.train_Yvar is not None,
        "feature_map": record,
        "fit_info": dataclasses.asdict(sur.fit_info),
    }
    return SurrogateState(meta=meta, tensors={k: v.detach().clone() for k, v in tensors.items()})


def _check_feature_map(fm: FeatureMap, state: SurrogateState) -> None:
    """The given map must be the saved one: same kind and reference, equal saved tensors
    (projection matrices, embedding weights); a user callable is checked by reference only."""
    saved = state.meta["feature_map"]
    record, tensors = fm.to_record()
    same = record.get("kind") == saved["kind"] and record.get("reference") == saved.get("reference")
    saved_names = {k[len("features."):] for k in state.tensors if k.startswith("features.")}
    same = same and set(tensors) == saved_names
    for k, v in tensors.items():
        old = state.tensors.get(f"features.{k}")
        same = same and old is not None and old.shape == v.shape and torch.equal(
            old, v.detach().cpu().to(old.dtype))
    if not same:
        raise SurrogateError(
            f"feature_map {record.get('kind')!r} (reference {record.get('reference')!r}) differs "
            f"from the one the state was fitted with ({saved['kind']!r}, reference "
            f"{saved.get('reference')!r}, or other weights); pass the same map, feature_map=None "
            "to rebuild the saved one, or refit with Surrogate.fit"
        )


def rebuild(cls: type[Surrogate], state: SurrogateState, X: Tensor, Y: Tensor,
            Yvar: Tensor | None, *, feature_map: FeatureMap | None,
            objects: dict[str, Any] | None, allow_import: bool) -> Surrogate:
    """``Surrogate.from_state``: same data + state → identical posterior."""
    from optimizer.surrogate.gp import FitInfo, _build

    meta = state.meta
    X, Y, Yvar = check_training_data(X, Y, Yvar)
    fp = fingerprint(X, Y, Yvar)
    if fp != meta["fingerprint"]:
        raise SurrogateError(
            f"training data (n={X.shape[0]}, Yvar {'given' if Yvar is not None else 'None'}) is "
            f"not the data this state was fitted on (n={meta['num_observations']}, Yvar "
            f"{'given' if meta['has_yvar'] else 'None'}, fingerprint {meta['fingerprint'][:12]}); "
            "pass the same observations in the same order, or refit with "
            "Surrogate.fit(X, Y, Yvar, previous=state) to warm-start on the new data"
        )
    if feature_map is None:
        ftensors = {k[len("features."):]: v for k, v in state.tensors.items()
                    if k.startswith("features.")}
        feature_map = feature_map_from_record(meta["feature_map"], ftensors, objects=objects,
                                              allow_import=allow_import)
    else:
        _check_feature_map(feature_map, state)
    cfg = state.config
    dtype = getattr(torch, cfg.dtype)
    Z = cls._features(feature_map, X, dtype)
    Yd, Yvd = Y.to(dtype), cls._noise(Yvar, Y, dtype, cfg)
    cond_idx = state.tensors["cond_idx"].to(Z.device)
    bounds = state.tensors["bounds"].to(device=Z.device, dtype=dtype)
    models = []
    with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size):
        for j in range(int(meta["num_objectives"])):
            yv = None if Yvd is None else Yvd[cond_idx, j:j + 1]
            model = _build(Z[cond_idx], Yd[cond_idx, j:j + 1], yv, bounds)
            saved = state.model_state(j)
            # keep_transforms=False: the targets stay exactly as standardized at construction
            # (BoTorch's default round trip through untransform changes their last bit).
            model.load_state_dict({k: v.to(device=Z.device) for k, v in saved.items()},
                                  strict=True, keep_transforms=False)
            models.append(model.eval())
    info = FitInfo(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in meta["fit_info"].items()})
    return cls(models, feature_map=feature_map, config=cfg, X=X, Y=Y, Yvar=Yvar, Z=Z,
               cond_idx=cond_idx, bounds=bounds, fit_info=info)
