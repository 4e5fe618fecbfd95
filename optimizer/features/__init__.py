"""Feature maps `φ`: design space → the surrogate's input space (a room below priors and the
surrogate, so a prior can name its own map without importing the surrogate).

>>> fm = PCAFeatures.fit(prior_samples, k=8)        # or IdentityFeatures(), EmbeddingFeatures(...)
>>> z = fm(designs)                                 # B x k
>>> record, tensors = fm.to_record()                # feature_map_from_record(record, tensors, ...)
"""
from optimizer.features.maps import (
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

__all__ = [
    "FEATURE_KINDS", "CallableFeatures", "EmbeddingFeatures", "FeatureMap", "IdentityFeatures",
    "PCAFeatures", "RandomProjectionFeatures", "feature_map_from_record", "make_feature_map",
]
