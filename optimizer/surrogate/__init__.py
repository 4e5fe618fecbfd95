"""The surrogate of the oracle: the BoTorch GP, the SMC reward, pre-screening and the pickle-free
state. The feature maps live in ``optimizer.features`` and are re-exported here.

>>> fm = PCAFeatures.fit(prior_samples, k=8)
>>> sur = Surrogate.fit(X, Y, Yvar, feature_map=fm, config=SurrogateConfig(maximize=True))
>>> r_hat = sur.reward(beta=2.0)                      # optimizer.das.sample(prior, r_hat, ...)
>>> res = screen(sur, particles, q=4, pending=in_flight)
>>> blob = sur.state().to_bytes()  # Surrogate.from_state(SurrogateState.from_bytes(blob), X, Y, Yvar)
"""
from optimizer.features import (
    FEATURE_KINDS,
    CallableFeatures,
    EmbeddingFeatures,
    FeatureMap,
    IdentityFeatures,
    PCAFeatures,
    RandomProjectionFeatures,
    feature_map_from_record,
    make_feature_map,
)
from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.dedup import Exclusion, find_duplicates
from optimizer.surrogate.gp import FitInfo, Surrogate
from optimizer.surrogate.reward import SurrogateReward
from optimizer.surrogate.scalarize import Scalarization, make_scalarization
from optimizer.surrogate.screening import ACQUISITIONS, ScreeningResult, screen
from optimizer.surrogate.state import SurrogateState

__all__ = [
    "ACQUISITIONS", "FEATURE_KINDS", "CallableFeatures", "EmbeddingFeatures", "Exclusion",
    "FeatureMap", "FitInfo", "IdentityFeatures", "PCAFeatures", "RandomProjectionFeatures",
    "Scalarization", "ScreeningResult", "Surrogate", "SurrogateConfig", "SurrogateReward",
    "SurrogateState", "feature_map_from_record", "find_duplicates", "make_feature_map",
    "make_scalarization", "screen",
]
