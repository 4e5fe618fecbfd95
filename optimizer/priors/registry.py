r"""Bundled priors by name, priors by path, and each bundled prior's feature map and support check.

Names (``BUNDLED``):

* ``"digits"`` — diffusers ``UNet2DModel`` on scikit-learn's 8x8 digits; designs are
  `1 x 8 x 8` images in `[-1, 1]` (`pixels = 8 (x + 1)`); features: the frozen digit
  classifier's 32-dim penultimate layer; support: classifier confidence ≥ 0.5.
* ``"manifold"`` — ``MLPDiffusionPrior`` on historical designs of
  ``oracles.simulated.manifold.ManifoldProblem()`` (`d = 16`); features: identity; support:
  distance to the manifold ≤ 0.1.
* ``"gmm-toy"`` — the DAS paper's 2-d toy, 9 equal Gaussians at `{-4, 0, 4}²` with covariance
  `0.3 I` (exact ``GaussianMixturePrior``); features: identity; support: squared Mahalanobis
  distance to the nearest mean ≤ `χ²_2(0.99) = 9.21` (99% of the prior's mass). Its reward
  `r = -x²/100 - y²` (``gmm_toy_reward``) has the closed-form tilted target ``gmm_toy_target(α)``.

Paths: a folder with ``unet/`` + ``scheduler/`` (and no ``vae/``) is a pixel diffusers prior,
one with ``vae/`` a latent (Stable Diffusion) prior, one whose ``config.json`` names
``MLPDiffusionPrior`` an MLP vector prior.

>>> prior = load_prior("digits")                   # or load_prior("/models/my-ddpm")
>>> entry = BUNDLED["digits"]
>>> phi = entry.feature_map(); ok = entry.support_check()
>>> phi(designs).shape, ok(designs).float().mean()  # B x 32, fraction on support
>>> load_feature_map("manifold")                     # IdentityFeatures()
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from optimizer.errors import PriorError
from optimizer.features import EmbeddingFeatures, FeatureMap, IdentityFeatures
from optimizer.priors.base import DiffusionPrior

if TYPE_CHECKING:
    from optimizer.priors.digits_embedding import DigitClassifier
    from optimizer.priors.gaussian_mixture import GaussianMixturePrior
    from optimizer.priors.gaussian_mixture import TiltedMixture

BUNDLE_ROOT = Path(__file__).parent / "bundled"
PriorKind = Literal["pixel-diffusers", "latent-diffusers", "mlp-diffusion", "gaussian-mixture"]

GMM_TOY_STD2 = 0.3
GMM_TOY_SUPPORT_CHI2 = 9.2103  # χ²_2 quantile at 0.99
# A digit is "recognized" when the classifier puts >= half its probability on one class. The
# classifier is trained with outlier exposure (uniform target on noise, shuffled pixels and
# two-digit blends), so off-support inputs get near-uniform outputs: noise passes 0.2% of the
# time, 50/50 blends ~10%, real held-out digits 99.2%, bundled-prior samples ~94%.
DIGITS_CONFIDENCE = 0.5
DIGIT_EMBEDDING_REFERENCE = "optimizer.priors.registry:digit_embedding_module"
#: The simulated problem whose historical designs trained the ``manifold`` prior, named by
#: reference (like a stored feature map), so the registry never imports the oracle room; its
#: parameters are the bundle's ``training.json`` ``"problem"`` entry.
MANIFOLD_PROBLEM_REFERENCE = "oracles.simulated.manifold:ManifoldProblem"
Device = torch.device | str | None
Dtype = torch.dtype | None


class DigitFeatures(nn.Module):
    """The frozen digit classifier's penultimate layer: `B x 1 x 8 x 8` → `B x 32` (differentiable).

    Wrapped in ``optimizer.features.EmbeddingFeatures`` with reference
    ``"optimizer.priors.registry:digit_embedding_module"`` so a stored campaign rebuilds it.
    """

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.output_dim = int(classifier.embed_dim)

    def forward(self, designs: Tensor) -> Tensor:
        return self.classifier.embed(designs.to(next(self.classifier.parameters()).dtype))


@dataclass(frozen=True)
class SupportCheck:
    """Whether designs are valid (on the prior's support): `score(x) ≥ threshold` (or `≤`).

    Attributes:
        description: one line stating the rule, to print beside benchmark figures.
        score: `B x *design_shape` → `B`-dim Tensor.
        threshold: the cut.
        higher_is_valid: True for a confidence, False for a distance.
    """

    description: str
    score: Callable[[Tensor], Tensor]
    threshold: float
    higher_is_valid: bool

    def __call__(self, designs: Tensor) -> Tensor:
        """`B`-dim bool Tensor, True where the design is on the support."""
        s = self.score(designs)
        return s >= self.threshold if self.higher_is_valid else s <= self.threshold


@dataclass(frozen=True)
class BundledPrior:
    """A prior shipped with tiltloop, with its surrogate feature map and its support check.

    Attributes:
        name: the name a campaign config uses (``prior = "digits"``).
        kind: how the prior is built.
        path: the bundle folder (None for the closed-form ``gmm-toy``).
        design_shape: shape of one decoded design.
        description: one line for listings.
        make_feature_map: ``(entry, device, dtype) -> FeatureMap``, this prior's `φ`.
        make_support_check: ``(entry, device) -> SupportCheck``, this prior's validity rule.
    """

    name: str
    kind: PriorKind
    path: Path | None
    design_shape: tuple[int, ...]
    description: str
    make_feature_map: Callable[[BundledPrior, Device, Dtype], FeatureMap] = field(
        repr=False, compare=False)
    make_support_check: Callable[[BundledPrior, Device], SupportCheck] = field(
        repr=False, compare=False)

    def load(self, *, device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> DiffusionPrior:
        """The prior itself (frozen)."""
        if self.kind == "gaussian-mixture":
            return gmm_toy_prior(device=device, dtype=dtype)
        assert self.path is not None
        return _load_folder(self.path, self.kind, device=device, dtype=dtype)

    def feature_map(self, *, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> FeatureMap:
        """The surrogate's `φ` (e.g. the frozen digit embedding `B x 32`, or the identity)."""
        return self.make_feature_map(self, device, dtype)

    def support_check(self, *, device: torch.device | str | None = None) -> SupportCheck:
        """This prior's validity rule (see the module docstring)."""
        return self.make_support_check(self, device)


def _identity_features(entry: BundledPrior, device: Device, dtype: Dtype) -> FeatureMap:
    return IdentityFeatures()


def _digit_features(entry: BundledPrior, device: Device, dtype: Dtype) -> FeatureMap:
    module = DigitFeatures(_digit_classifier(entry, device, dtype))
    return EmbeddingFeatures(module, reference=DIGIT_EMBEDDING_REFERENCE)


def _digit_support(entry: BundledPrior, device: Device) -> SupportCheck:
    net = _digit_classifier(entry, device, None)
    return SupportCheck(
        f"digit classifier confidence (max softmax) >= {DIGITS_CONFIDENCE}",
        lambda x: net.confidence(x.to(next(net.parameters())))[0],
        DIGITS_CONFIDENCE, True)


def _manifold_support(entry: BundledPrior, device: Device) -> SupportCheck:
    """`dist(x) ≤ support_radius` of the problem the prior was trained on: its class is named by
    ``MANIFOLD_PROBLEM_REFERENCE`` and its parameters are read from the bundle's training.json."""
    assert entry.path is not None
    params = json.loads((entry.path / "training.json").read_text())["problem"]
    module_name, _, attr = MANIFOLD_PROBLEM_REFERENCE.partition(":")
    problem = getattr(importlib.import_module(module_name), attr)(**params)
    return SupportCheck(
        f"distance to the manifold <= {problem.support_radius} (noise of the historical "
        f"designs: {problem.noise_std} per dimension)", problem.distance,
        problem.support_radius, False)


def _gmm_toy_support(entry: BundledPrior, device: Device) -> SupportCheck:
    means = gmm_toy_means()
    return SupportCheck(
        f"squared Mahalanobis distance to the nearest mode <= {GMM_TOY_SUPPORT_CHI2} "
        "(chi2_2 at 0.99)",
        lambda x: (torch.cdist(x.double().flatten(1), means.to(x.device)) ** 2).min(-1).values
        / GMM_TOY_STD2,
        GMM_TOY_SUPPORT_CHI2, False)


BUNDLED: dict[str, BundledPrior] = {
    "digits": BundledPrior("digits", "pixel-diffusers", BUNDLE_ROOT / "digits", (1, 8, 8),
                           "diffusers UNet2DModel on sklearn 8x8 digits, images in [-1, 1]",
                           _digit_features, _digit_support),
    "manifold": BundledPrior("manifold", "mlp-diffusion", BUNDLE_ROOT / "manifold", (16,),
                             "MLP diffusion on 16-d designs near a curved 6-d manifold",
                             _identity_features, _manifold_support),
    "gmm-toy": BundledPrior("gmm-toy", "gaussian-mixture", None, (2,),
                            "exact 9-mode 2-d Gaussian mixture of the DAS paper",
                            _identity_features, _gmm_toy_support),
}


def gmm_toy_means() -> Tensor:
    """`9 x 2` float64 means `{-4, 0, 4}²` of the toy mixture."""
    grid = torch.tensor([-4.0, 0.0, 4.0], dtype=torch.float64)
    return torch.cartesian_prod(grid, grid)


def gmm_toy_prior(*, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> GaussianMixturePrior:
    """The paper's toy: 9 equal-weight Gaussians at `{-4, 0, 4}²`, covariance `0.3 I`."""
    from optimizer.priors.gaussian_mixture import GaussianMixturePrior

    dtype = dtype or torch.float32
    means = gmm_toy_means().to(device=device, dtype=dtype)
    covs = GMM_TOY_STD2 * torch.eye(2, dtype=dtype, device=device).repeat(9, 1, 1)
    return GaussianMixturePrior(means, covs, torch.full((9,), 1 / 9, dtype=dtype, device=device))


def digit_embedding_module() -> DigitFeatures:
    """Zero-argument factory of the digits feature module (the surrogate rebuilds it by name)."""
    return DigitFeatures(_digit_classifier(BUNDLED["digits"], None, None))


def gmm_toy_reward(x: Tensor) -> Tensor:
    """The paper's toy reward `r(x, y) = -x²/100 - y²` (`B x 2` → `B`)."""
    return -x[..., 0] ** 2 / 100 - x[..., 1] ** 2


def gmm_toy_target(alpha: float = 1.0) -> TiltedMixture:
    """The exact tilted target `p(x) exp(r(x)/α) / Z` of the toy (a 9-mode mixture, float64).

    `r = -½ xᵀAx` with `A = diag(0.02, 2)`; at `α = 1` its mean reward is `-0.2907` (the
    paper's -0.29): ``t.mixture.expected_quadratic(A, 0)``.
    """
    A = torch.diag(torch.tensor([0.02, 2.0], dtype=torch.float64))
    prior = gmm_toy_prior(dtype=torch.float64)
    return prior.tilt_quadratic(A, torch.zeros(2, dtype=torch.float64), alpha)


def _digit_classifier(entry: BundledPrior, device, dtype) -> DigitClassifier:
    from optimizer.priors.digits_embedding import DigitClassifier

    assert entry.path is not None
    return DigitClassifier.from_pretrained(entry.path / "classifier", device=device, dtype=dtype)


def detect_kind(path: Path) -> PriorKind:
    """The kind of prior saved in folder ``path`` (see the module docstring)."""
    if (path / "unet").is_dir():
        return "latent-diffusers" if (path / "vae").is_dir() else "pixel-diffusers"
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text()).get("_class_name")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise PriorError(f"{cfg} is not a JSON object ({exc}); re-save the prior") from exc
        if name == "MLPDiffusionPrior":
            return "mlp-diffusion"
    raise PriorError(
        f"prior folder {str(path)!r} holds no known layout: expected unet/ + scheduler/ "
        "(diffusers pixel prior), unet/ + vae/ + text_encoder/ + tokenizer/ + scheduler/ "
        "(Stable Diffusion), or config.json naming MLPDiffusionPrior"
    )


def _load_folder(path: Path, kind: PriorKind, *, device, dtype) -> DiffusionPrior:
    if kind == "pixel-diffusers":
        from optimizer.priors.diffusers_pixel import PixelDiffusersPrior

        return PixelDiffusersPrior.from_pretrained(path, device=device, dtype=dtype)
    if kind == "latent-diffusers":
        from optimizer.priors.diffusers_latent import LatentDiffusersPrior

        return LatentDiffusersPrior.from_pretrained(path, device=device, dtype=dtype)
    from optimizer.priors.mlp import MLPDiffusionPrior

    return MLPDiffusionPrior.from_pretrained(path, device=device, dtype=dtype)


def _unknown(name_or_path: object) -> PriorError:
    return PriorError(
        f"prior {str(name_or_path)!r} is neither a bundled prior nor an existing folder; use one "
        f"of: {', '.join(sorted(BUNDLED))}, or a path to a saved prior folder"
    )


def resolve(name_or_path: str | Path) -> BundledPrior | Path:
    """The ``BundledPrior`` for a name, or the folder for a path; raises ``PriorError`` else."""
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        return BUNDLED[name_or_path]
    path = Path(name_or_path).expanduser()
    try:
        if path.is_dir():
            return path
        exists = path.exists()
    except OSError as exc:  # ENAMETOOLONG, a loop of symlinks, a folder we may not read
        shown = str(path) if len(str(path)) <= 200 else f"{str(path)[:200]}... ({len(str(path))} characters)"
        raise PriorError(f"prior path {shown!r} cannot be checked ({exc.strerror or exc}); use "
                         f"one of: {', '.join(sorted(BUNDLED))}, or a path to a saved prior "
                         f"folder") from None
    if exists:
        raise PriorError(f"prior path {str(path)!r} is a file; pass the folder the prior was saved in")
    raise _unknown(name_or_path)


def load_prior(name_or_path: str | Path, *, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> DiffusionPrior:
    """Load a bundled prior by name (``"digits"``, ``"manifold"``, ``"gmm-toy"``) or a saved folder.

    Raises:
        PriorError: unknown name / missing path (the message lists the valid names), or a folder
            with no known layout.
    """
    target = resolve(name_or_path)
    if isinstance(target, BundledPrior):
        return target.load(device=device, dtype=dtype)
    return _load_folder(target, detect_kind(target), device=device, dtype=dtype)


def load_feature_map(name_or_path: str | Path, *, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> FeatureMap:
    """The surrogate feature map `φ` of a bundled prior, or of a saved prior folder.

    A folder with a ``classifier/`` subfolder (a copy of the digits bundle) gets the digit
    embedding (without a rebuild reference: a campaign that stores its feature map should name
    the bundled prior instead); any other folder the identity (flatten).
    """
    target = resolve(name_or_path)
    if isinstance(target, BundledPrior):
        return target.feature_map(device=device, dtype=dtype)
    if (target / "classifier").is_dir():
        from optimizer.priors.digits_embedding import DigitClassifier

        net = DigitClassifier.from_pretrained(target / "classifier", device=device, dtype=dtype)
        return EmbeddingFeatures(DigitFeatures(net), reference=None)
    return IdentityFeatures()
