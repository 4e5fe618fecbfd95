r"""Feature maps `φ`: design space → the surrogate's input space.

`z = φ(x)`, `x`: `B x *design_shape`-dim Tensor, `z`: `B x k`-dim Tensor.

The GP lives on `z`, so `φ` decides what "similar designs" means: the raw flattened design
(vector designs), a frozen embedding network (images), a linear projection fitted on prior
samples (PCA, random projection) or any user callable. Each map declares ``differentiable``; the
surrogate's reward copies it, and the DAS sampler reads it to choose guided or gradient-free SMC.

Serialization without pickle: ``to_record()`` returns ``(record, tensors)``, a JSON-able dict and a
name → Tensor dict (saved as safetensors). Maps that hold code (an embedding ``nn.Module``, a user
callable) are rebuilt *by reference*: the record keeps the string ``reference`` given at
construction, and ``feature_map_from_record`` resolves it from an ``objects`` mapping the caller
supplies (``{"my_pkg.embed:build": module_or_factory}``) or, only with ``allow_import=True``, by
importing ``"package.module:attribute"``; an embedding's weights travel in the tensors and are
loaded into the rebuilt module. A map saved without a reference is rebuilt only when the caller
passes it again (``Surrogate.from_state(..., feature_map=fm)``; its weights are compared).
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from optimizer.errors import ConfigError, SurrogateError, format_choice_error


class FeatureMap:
    """Base class: flatten-and-map `B x *design_shape` designs to `B x k` features."""

    kind: ClassVar[str] = "base"
    differentiable: bool = True

    def __call__(self, X: Tensor) -> Tensor:
        if X.dim() < 2:
            raise SurrogateError(
                f"designs X has shape {tuple(X.shape)}; expected `B x *design_shape` with a "
                "leading batch dimension (use X.unsqueeze(0) for one design)"
            )
        Z = self._forward(X)
        return Z.reshape(X.shape[0], -1)

    def _forward(self, X: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """``(JSON-able record, tensors)`` that ``feature_map_from_record`` rebuilds from."""
        raise NotImplementedError  # pragma: no cover - abstract


class IdentityFeatures(FeatureMap):
    """`φ(x) = flatten(x)`; for vector designs (or small arrays)."""

    kind = "identity"
    differentiable = True

    def _forward(self, X: Tensor) -> Tensor:
        return X.reshape(X.shape[0], -1)

    def to_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        return {"kind": self.kind}, {}


class _LinearFeatures(FeatureMap):
    """`φ(x) = (flatten(x) − m) W`, with `m`: `D` and `W`: `D x k` fitted once on prior samples."""

    def __init__(self, mean: Tensor, matrix: Tensor) -> None:
        if mean.dim() != 1 or matrix.dim() != 2 or matrix.shape[0] != mean.shape[0]:
            raise SurrogateError(
                f"{self.kind} features: mean {tuple(mean.shape)} and matrix {tuple(matrix.shape)} "
                "must be `D` and `D x k`; refit with .fit(samples, k)"
            )
        self.mean = mean.detach().clone()
        self.matrix = matrix.detach().clone()

    @property
    def out_dim(self) -> int:
        """`k`, the number of features."""
        return int(self.matrix.shape[1])

    def _forward(self, X: Tensor) -> Tensor:
        flat = X.reshape(X.shape[0], -1)
        if flat.shape[1] != self.mean.shape[0]:
            raise SurrogateError(
                f"{self.kind} features were fitted on designs of {self.mean.shape[0]} values but "
                f"got designs of shape {tuple(X.shape[1:])} ({flat.shape[1]} values); refit the "
                "feature map on samples of the current prior"
            )
        mean = self.mean.to(device=flat.device, dtype=flat.dtype)
        return (flat - mean) @ self.matrix.to(device=flat.device, dtype=flat.dtype)

    def to_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        return {"kind": self.kind, "out_dim": self.out_dim}, {
            "mean": self.mean.contiguous(), "matrix": self.matrix.contiguous()}


def _flat_samples(samples: Tensor, k: int, kind: str) -> Tensor:
    if samples.dim() < 2 or not torch.isfinite(samples).all():
        raise SurrogateError(
            f"{kind}.fit(samples): samples must be a finite `N x *design_shape` Tensor, got shape "
            f"{tuple(samples.shape)}; draw prior samples and drop non-finite rows first"
        )
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"{kind}.fit: k={k!r} must be a positive int (number of features)")
    return samples.reshape(samples.shape[0], -1)


class PCAFeatures(_LinearFeatures):
    """Principal components of prior samples: `φ(x) = (x − x̄) V_k`, `V_k` the top-k directions.

    >>> fm = PCAFeatures.fit(prior_samples, k=8)   # prior_samples: `N x *design_shape`
    >>> fm(designs).shape                           # torch.Size([B, 8])
    """

    kind = "pca"
    differentiable = True

    @classmethod
    def fit(cls, samples: Tensor, k: int) -> PCAFeatures:
        """Fit on `N x *design_shape` prior samples; needs `k ≤ min(N − 1, D)`."""
        flat = _flat_samples(samples, k, "PCAFeatures")
        n, d = flat.shape
        if k > min(n - 1, d):
            raise ConfigError(
                f"PCAFeatures.fit: k={k} exceeds min(N-1, D)={min(n - 1, d)} for {n} samples of "
                f"{d} values; use more prior samples or a smaller k"
            )
        flat64 = flat.double()
        mean = flat64.mean(0)
        # Right singular vectors of the centered data are the principal directions.
        _, _, vh = torch.linalg.svd(flat64 - mean, full_matrices=False)
        comps = vh[:k]
        # Fix each direction's sign (largest |entry| positive) so refits are reproducible.
        idx = comps.abs().argmax(dim=1)
        signs = torch.sign(comps.gather(1, idx[:, None]))
        return cls(mean.to(flat.dtype), (comps * signs).T.to(flat.dtype))


class RandomProjectionFeatures(_LinearFeatures):
    """Gaussian random projection `φ(x) = (x − x̄) W`, `W_ij ~ N(0, 1/k)` (Johnson–Lindenstrauss).

    >>> g = torch.Generator().manual_seed(0)
    >>> fm = RandomProjectionFeatures.fit(prior_samples, k=16, generator=g)
    """

    kind = "random_projection"
    differentiable = True

    @classmethod
    def fit(cls, samples: Tensor, k: int, *, generator: torch.Generator | None = None
            ) -> RandomProjectionFeatures:
        """Center on the mean of `N x *design_shape` samples and draw `W` from ``generator``."""
        flat = _flat_samples(samples, k, "RandomProjectionFeatures")
        d = flat.shape[1]
        W = torch.randn(d, k, generator=generator, dtype=torch.float64) / math.sqrt(k)
        return cls(flat.double().mean(0).to(flat.dtype), W.to(device=flat.device, dtype=flat.dtype))


class EmbeddingFeatures(FeatureMap):
    """A frozen embedding network: `φ(x) = flatten(f_θ(x))`, θ fixed (eval mode, no grad to θ).

    Gradients still flow to `x`, so guided SMC works through the network.

    Args:
        module: any ``torch.nn.Module`` mapping `B x *design_shape` to `B x ...`.
        reference: the name it is rebuilt by (``"pkg.mod:attr"`` or a key of the ``objects``
            mapping given to ``feature_map_from_record``); without one, a saved state can only
            be rebuilt with the map passed explicitly (``feature_map=``).
        differentiable: declare False for a network that is not (e.g. uses argmax).

    >>> fm = EmbeddingFeatures(net, reference="my_lab.embed:build_net")
    """

    kind = "embedding"

    def __init__(self, module: nn.Module, *, reference: str | None = None,
                 differentiable: bool = True) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(
                f"EmbeddingFeatures(module={type(module).__name__}): module must be a "
                "torch.nn.Module; wrap other callables in CallableFeatures"
            )
        self.module = module.eval().requires_grad_(False)
        self.reference = reference
        self.differentiable = bool(differentiable)

    def _forward(self, X: Tensor) -> Tensor:
        param = next(iter(self.module.parameters()), None)
        Xin = X if param is None else X.to(device=param.device, dtype=param.dtype)
        return self.module(Xin).to(dtype=X.dtype, device=X.device)

    def to_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        record = {"kind": self.kind, "reference": self.reference,
                  "differentiable": self.differentiable}
        tensors = {k: v.detach().clone().contiguous() for k, v in self.module.state_dict().items()}
        return record, tensors


class CallableFeatures(FeatureMap):
    """Any user callable `f: B x *design_shape → B x k`; declare whether it is differentiable.

    >>> fm = CallableFeatures(descriptors, differentiable=False, reference="chem.desc:descriptors")
    """

    kind = "callable"

    def __init__(self, fn: Callable[[Tensor], Tensor], *, differentiable: bool,
                 reference: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError(f"CallableFeatures(fn={fn!r}): fn must be callable")
        self.fn = fn
        self.differentiable = bool(differentiable)
        self.reference = reference

    def _forward(self, X: Tensor) -> Tensor:
        Z = self.fn(X)
        if not isinstance(Z, Tensor) or Z.shape[0] != X.shape[0]:
            raise SurrogateError(
                f"feature callable {self.reference or self.fn!r} returned "
                f"{getattr(Z, 'shape', type(Z))} for {X.shape[0]} designs; it must return a "
                "`B x k` Tensor"
            )
        return Z

    def to_record(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        return {"kind": self.kind, "reference": self.reference,
                "differentiable": self.differentiable}, {}


def _require_reference(kind: str, reference: str | None) -> str:
    if not reference:
        raise SurrogateError(
            f"{kind} features were saved without a reference, so they cannot be rebuilt from "
            "the state alone; pass the same map as feature_map= when rebuilding, or build it "
            "with reference='package.module:attribute' (or a name you pass in `objects`)"
        )
    return reference


def _resolve(reference: str, objects: Mapping[str, Any] | None, allow_import: bool) -> Any:
    if objects is not None and reference in objects:
        return objects[reference]
    if not allow_import:
        raise SurrogateError(
            f"feature map reference {reference!r} is not in `objects`; pass "
            f"objects={{{reference!r}: <module, factory or callable>}} or allow_import=True "
            "(imports code named in stored data: only for trusted campaigns)"
        )
    mod_name, _, attr = reference.partition(":")
    if not attr:
        raise SurrogateError(f"feature map reference {reference!r} must be 'package.module:attr'")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def feature_map_from_record(
    record: Mapping[str, Any], tensors: Mapping[str, Tensor], *,
    objects: Mapping[str, Any] | None = None, allow_import: bool = False,
) -> FeatureMap:
    """Rebuild a feature map from ``to_record()`` output (no pickle).

    Code-holding maps (embedding, callable) are resolved by their ``reference`` from ``objects``
    (a ready object, or for an embedding a zero-argument factory returning the module), else by
    import when ``allow_import`` is True. An embedding's saved weights are loaded strictly.
    """
    kind = record.get("kind")
    if kind == "identity":
        return IdentityFeatures()
    if kind in ("pca", "random_projection"):
        cls = PCAFeatures if kind == "pca" else RandomProjectionFeatures
        return cls(tensors["mean"], tensors["matrix"])
    if kind == "embedding":
        obj = _resolve(_require_reference(kind, record.get("reference")), objects, allow_import)
        module = obj if isinstance(obj, nn.Module) else obj()
        if tensors:
            try:
                module.load_state_dict(dict(tensors), strict=True)
            except RuntimeError as exc:
                raise SurrogateError(
                    f"embedding {record['reference']!r}: saved weights do not fit the rebuilt "
                    f"module ({exc}); rebuild the same architecture the state was saved with"
                ) from exc
        return EmbeddingFeatures(module, reference=record["reference"],
                                 differentiable=record.get("differentiable", True))
    if kind == "callable":
        fn = _resolve(_require_reference(kind, record.get("reference")), objects, allow_import)
        return CallableFeatures(fn, differentiable=record["differentiable"],
                                reference=record["reference"])
    raise SurrogateError(format_choice_error("feature map record kind", kind, FEATURE_KINDS))


FEATURE_KINDS = ("identity", "pca", "random_projection", "embedding", "callable")


def make_feature_map(
    kind: str, *, samples: Tensor | None = None, k: int | None = None,
    module: nn.Module | None = None, fn: Callable[[Tensor], Tensor] | None = None,
    reference: str | None = None, differentiable: bool | None = None,
    generator: torch.Generator | None = None,
) -> FeatureMap:
    """Build a feature map by name (for configs).

    ``identity``: no options; ``pca`` / ``random_projection``: ``samples``, ``k`` (and
    ``generator``); ``embedding``: ``module``, ``reference``; ``callable``: ``fn``,
    ``differentiable``, ``reference``.

    >>> fm = make_feature_map("pca", samples=prior.sample(512), k=8)
    """
    if kind == "identity":
        return IdentityFeatures()
    if kind in ("pca", "random_projection"):
        if samples is None or k is None:
            raise ConfigError(f"make_feature_map({kind!r}) needs samples= (prior draws) and k=")
        if kind == "pca":
            return PCAFeatures.fit(samples, k)
        return RandomProjectionFeatures.fit(samples, k, generator=generator)
    if kind == "embedding":
        if module is None:
            raise ConfigError("make_feature_map('embedding') needs module= (a torch.nn.Module)")
        return EmbeddingFeatures(module, reference=reference,
                                 differentiable=True if differentiable is None else differentiable)
    if kind == "callable":
        if fn is None or differentiable is None:
            raise ConfigError("make_feature_map('callable') needs fn= and differentiable=")
        return CallableFeatures(fn, differentiable=differentiable, reference=reference)
    raise ConfigError(format_choice_error("feature map kind", kind, FEATURE_KINDS))
