"""State without pickle: bytes round trip gives the identical posterior; mismatches are explained."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from surrogate_dummies import get_dummy_surrogate, make_embedding_net

from optimizer.errors import SurrogateError
from optimizer.surrogate import (
    EmbeddingFeatures,
    IdentityFeatures,
    PCAFeatures,
    Surrogate,
    SurrogateConfig,
    SurrogateState,
    screen,
)

F64 = torch.float64


def _same_posterior(a: Surrogate, b: Surrogate, X: torch.Tensor) -> None:
    ma, sa = a.posterior_mean_std(X)
    mb, sb = b.posterior_mean_std(X)
    assert torch.equal(ma, mb) and torch.equal(sa, sb)


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(num_objectives=2, with_yvar=True),
     dict(n=40, config=SurrogateConfig(fit_subset_size=12, max_conditioning_size=30,
                                       fit_maxiter=30))],
    ids=["one-objective", "two-objectives-yvar", "subsets"],
)
def test_round_trip_gives_identical_mean_and_variance(kwargs):
    sur = get_dummy_surrogate(**kwargs)
    blob = sur.state().to_bytes()
    assert isinstance(blob, bytes)
    back = Surrogate.from_state(SurrogateState.from_bytes(blob), sur.train_X, sur.train_Y,
                                sur.train_Yvar)
    X = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    _same_posterior(sur, back, X)
    assert back.fit_info == sur.fit_info
    assert back.config == sur.config
    r1, r2 = sur.reward(beta=2.0)(X), back.reward(beta=2.0)(X)
    assert torch.equal(r1, r2)


def test_blob_is_safetensors_with_a_json_header():
    blob = get_dummy_surrogate().state().to_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])  # plain JSON, no pickle anywhere
    meta = json.loads(header["__metadata__"]["tiltloop.surrogate"])
    assert meta["version"] == 1 and meta["feature_map"] == {"kind": "identity"}
    assert any(k.startswith("model.0.covar_module") for k in header)


def test_pca_feature_map_travels_in_the_state():
    g = torch.Generator().manual_seed(0)
    fm = PCAFeatures.fit(torch.randn(100, 5, generator=g, dtype=F64), k=2)
    X = torch.randn(12, 5, generator=g, dtype=F64)
    sur = Surrogate.fit(X, fm(X)[:, :1].cos(), feature_map=fm,
                        config=SurrogateConfig(fit_maxiter=30))
    state = SurrogateState.from_bytes(sur.state().to_bytes())
    back = Surrogate.from_state(state, X, sur.train_Y)  # feature map rebuilt from the state
    assert back.feature_map.kind == "pca"
    _same_posterior(sur, back, torch.randn(20, 5, generator=g, dtype=F64))
    other = PCAFeatures.fit(torch.randn(100, 5, generator=g, dtype=F64), k=2)
    with pytest.raises(SurrogateError, match="differs from the one the state was fitted with"):
        Surrogate.from_state(state, X, sur.train_Y, feature_map=other)


def test_embedding_feature_map_is_rebuilt_by_reference():
    ref = "surrogate_dummies:make_embedding_net"
    fm = EmbeddingFeatures(make_embedding_net(), reference=ref)
    X = torch.rand(10, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    sur = Surrogate.fit(X, X.sum(-1, keepdim=True), feature_map=fm,
                        config=SurrogateConfig(fit_maxiter=30))
    state = SurrogateState.from_bytes(sur.state().to_bytes())
    with pytest.raises(SurrogateError, match="is not in `objects`"):
        Surrogate.from_state(state, X, sur.train_Y)
    back = Surrogate.from_state(state, X, sur.train_Y, objects={ref: make_embedding_net})
    _same_posterior(sur, back, torch.rand(8, 4, dtype=F64))
    assert back.reward().differentiable
    # passing the map itself works too; a map with other weights is refused
    again = Surrogate.from_state(state, X, sur.train_Y, feature_map=fm)
    _same_posterior(sur, again, torch.rand(8, 4, dtype=F64))
    other = EmbeddingFeatures(make_embedding_net(), reference=ref)
    with torch.no_grad():
        other.module[2].bias.add_(0.5)
    with pytest.raises(SurrogateError, match="or other weights"):
        Surrogate.from_state(state, X, sur.train_Y, feature_map=other)


def test_an_unreferenced_embedding_saves_and_rebuilds_when_passed_again():
    fm = EmbeddingFeatures(make_embedding_net())  # e.g. a network loaded from a local folder
    X = torch.rand(9, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    sur = Surrogate.fit(X, X[:, :1] ** 2, feature_map=fm, config=SurrogateConfig(fit_maxiter=30))
    state = SurrogateState.from_bytes(sur.state().to_bytes())
    with pytest.raises(SurrogateError, match="saved without a reference"):
        Surrogate.from_state(state, X, sur.train_Y)
    back = Surrogate.from_state(state, X, sur.train_Y, feature_map=fm)
    _same_posterior(sur, back, torch.rand(6, 4, dtype=F64))


def test_other_training_data_is_refused_with_the_remedy():
    sur = get_dummy_surrogate()
    state = sur.state()
    Y = sur.train_Y.clone()
    Y[0] += 1e-3
    with pytest.raises(SurrogateError, match="same observations in the same order.*previous=state"):
        Surrogate.from_state(state, sur.train_X, Y)
    with pytest.raises(SurrogateError, match="Yvar given"):
        Surrogate.from_state(state, sur.train_X, sur.train_Y, torch.ones_like(Y))


def test_foreign_or_future_blobs_are_refused():
    with pytest.raises(SurrogateError, match="is not a tiltloop surrogate state"):
        SurrogateState.from_bytes(b"\x00" * 20)
    state = get_dummy_surrogate().state()
    future = SurrogateState(meta={**state.meta, "version": 99}, tensors=state.tensors)
    with pytest.raises(SurrogateError, match="version 99 is not supported"):
        SurrogateState.from_bytes(future.to_bytes())


def test_a_worker_rebuilt_surrogate_screens_identically():
    sur = get_dummy_surrogate(n=15)
    back = Surrogate.from_state(SurrogateState.from_bytes(sur.state().to_bytes()),
                                sur.train_X, sur.train_Y, feature_map=IdentityFeatures())
    C = torch.rand(40, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    a, b = screen(sur, C, 3, seed=4), screen(back, C, 3, seed=4)
    assert torch.equal(a.selected, b.selected) and torch.equal(a.acq_values, b.acq_values)
