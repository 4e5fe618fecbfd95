"""Surrogate state ↔ bytes, without pickle: one safetensors blob whose header carries JSON.

The state holds what a fit *learned*: every GP's ``state_dict`` (hyperparameters, fixed input
bounds, outcome standardization), which observations the posterior conditions on, the feature map
(record + tensors) and the config. The training data itself comes from storage; a fingerprint
(SHA-256) checks that the rebuild gets the same data, so the rebuilt posterior mean and variance
are identical to the saved ones. ``Surrogate.state()`` builds the record and
``Surrogate.from_state`` rebuilds a surrogate from it; this module only reads and writes it.

Layout: tensors ``model.{j}.{key}``, ``cond_idx``, ``bounds``, ``features.{name}``; metadata key
``tiltloop.surrogate`` = JSON ``{"version", "config", "design_shape", "num_objectives",
"num_observations", "fingerprint", "has_yvar", "feature_map", "fit_info"}``.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.surrogate.config import SurrogateConfig

if TYPE_CHECKING:
    from optimizer.features import FeatureMap

STATE_VERSION = 1
_META_KEY = "tiltloop.surrogate"
# Keys of a SingleTaskGP state_dict that are hyperparameters (not data-derived buffers).
HYPER_PREFIXES = ("mean_module.", "covar_module.", "likelihood.noise_covar.raw_noise")


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
        return [{k: v for k, v in self.model_state(j).items() if k.startswith(HYPER_PREFIXES)}
                for j in range(int(self.meta["num_objectives"]))]

    def feature_tensors(self) -> dict[str, Tensor]:
        """The saved feature map's tensors (projection matrices, embedding weights) by name."""
        return {k[len("features."):]: v for k, v in self.tensors.items()
                if k.startswith("features.")}

    def check_feature_map(self, fm: FeatureMap) -> None:
        """The given map must be the saved one: same kind and reference, equal saved tensors
        (projection matrices, embedding weights); a user callable is checked by reference only.

        Raises:
            SurrogateError: naming both maps and the remedy.
        """
        saved = self.meta["feature_map"]
        record, tensors = fm.to_record()
        same = (record.get("kind") == saved["kind"]
                and record.get("reference") == saved.get("reference"))
        saved_tensors = self.feature_tensors()
        same = same and set(tensors) == set(saved_tensors)
        for k, v in tensors.items():
            old = saved_tensors.get(k)
            same = same and old is not None and old.shape == v.shape and torch.equal(
                old, v.detach().cpu().to(old.dtype))
        if not same:
            raise SurrogateError(
                f"feature_map {record.get('kind')!r} (reference {record.get('reference')!r}) "
                f"differs from the one the state was fitted with ({saved['kind']!r}, reference "
                f"{saved.get('reference')!r}, or other weights); pass the same map, "
                "feature_map=None to rebuild the saved one, or refit with Surrogate.fit"
            )

