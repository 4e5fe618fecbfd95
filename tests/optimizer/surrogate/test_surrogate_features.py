"""Feature maps: shapes, fitted projections, declared differentiability, pickle-free records."""
from __future__ import annotations

import pytest
import torch
from surrogate_dummies import make_embedding_net

from optimizer.errors import ConfigError, SurrogateError
from optimizer.surrogate import (
    CallableFeatures,
    EmbeddingFeatures,
    IdentityFeatures,
    PCAFeatures,
    RandomProjectionFeatures,
    feature_map_from_record,
    make_feature_map,
)


def test_identity_flattens_designs(device):
    X = torch.arange(24.0, device=device).reshape(4, 2, 3)
    Z = IdentityFeatures()(X)
    assert Z.shape == (4, 6)
    assert torch.equal(Z[1], X[1].flatten())


def test_pca_finds_the_principal_directions(device):
    g = torch.Generator().manual_seed(0)
    # variance 9 along e0+e1, 1 along e2, 0.01 elsewhere, in 5 dims, mean 3
    basis = torch.eye(5, dtype=torch.float64)
    u = (basis[0] + basis[1]) / 2 ** 0.5
    s = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    X = 3.0 + 3.0 * s[:, :1] * u + s[:, 1:2] * basis[2] + 0.1 * torch.randn(
        4000, 5, generator=g, dtype=torch.float64)
    fm = PCAFeatures.fit(X.to(device), k=2)
    W = fm.matrix.cpu()
    assert abs(float(W[:, 0] @ u)) > 0.99
    assert abs(float(W[:, 1] @ basis[2])) > 0.99
    Z = fm(X.to(device))
    assert Z.shape == (4000, 2)
    assert Z.mean(0).abs().max() < 1e-8  # centered on the sample mean
    assert 8.0 < float(Z[:, 0].var()) < 10.0


def test_pca_rejects_too_many_components():
    with pytest.raises(ConfigError, match=r"k=7 exceeds min\(N-1, D\)=4"):
        PCAFeatures.fit(torch.randn(10, 4), k=7)


def test_fit_rejects_non_finite_samples():
    X = torch.randn(10, 4)
    X[3, 1] = float("nan")
    with pytest.raises(SurrogateError, match="samples must be a finite"):
        PCAFeatures.fit(X, k=2)


def test_random_projection_is_seeded_and_preserves_distances():
    X = torch.randn(50, 200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = RandomProjectionFeatures.fit(X, k=400, generator=torch.Generator().manual_seed(3))
    b = RandomProjectionFeatures.fit(X, k=400, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.matrix, b.matrix)
    d_in = torch.cdist(X, X)[0, 1:]
    d_out = torch.cdist(a(X), a(X))[0, 1:]
    ratio = d_out / d_in
    assert 0.8 < float(ratio.min()) and float(ratio.max()) < 1.2  # Johnson-Lindenstrauss


def test_linear_map_refuses_other_design_sizes():
    fm = PCAFeatures.fit(torch.randn(20, 4), k=2)
    with pytest.raises(SurrogateError, match="fitted on designs of 4 values"):
        fm(torch.randn(3, 5))


@pytest.mark.parametrize("kind", ["identity", "pca", "random_projection"])
def test_records_round_trip(kind):
    X = torch.randn(30, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fm = make_feature_map(kind, samples=X, k=3, generator=torch.Generator().manual_seed(0))
    record, tensors = fm.to_record()
    back = feature_map_from_record(record, tensors)
    assert back.kind == kind and back.differentiable
    assert torch.equal(back(X), fm(X))


def test_embedding_is_frozen_but_passes_gradients_to_designs():
    fm = EmbeddingFeatures(make_embedding_net(), reference="surrogate_dummies:make_embedding_net")
    assert all(not p.requires_grad for p in fm.module.parameters())
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    fm(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_embedding_rebuilt_by_reference_from_objects_or_import():
    fm = EmbeddingFeatures(make_embedding_net(), reference="surrogate_dummies:make_embedding_net")
    with torch.no_grad():  # change the weights: the saved tensors must carry them
        fm.module[0].bias.add_(1.0)
    record, tensors = fm.to_record()
    X = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(SurrogateError, match="allow_import=True"):
        feature_map_from_record(record, tensors)
    by_obj = feature_map_from_record(
        record, tensors, objects={"surrogate_dummies:make_embedding_net": make_embedding_net})
    by_import = feature_map_from_record(record, tensors, allow_import=True)
    assert torch.equal(by_obj(X), fm(X)) and torch.equal(by_import(X), fm(X))


def test_embedding_weights_that_do_not_fit_are_explained():
    fm = EmbeddingFeatures(make_embedding_net(), reference="net")
    record, tensors = fm.to_record()
    other = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    with pytest.raises(SurrogateError, match="saved weights do not fit the rebuilt module"):
        feature_map_from_record(record, tensors, objects={"net": other})


def test_code_maps_without_reference_are_saved_but_need_the_map_to_rebuild():
    record, tensors = CallableFeatures(lambda x: x, differentiable=False).to_record()
    assert record == {"kind": "callable", "reference": None, "differentiable": False}
    with pytest.raises(SurrogateError, match="saved without a reference.*feature_map="):
        feature_map_from_record(record, tensors)


def test_callable_declares_differentiability_and_checks_its_output():
    fm = make_feature_map("callable", fn=lambda x: x[:, :1] ** 2, differentiable=False)
    assert fm.differentiable is False
    assert fm(torch.ones(3, 2)).shape == (3, 1)
    bad = CallableFeatures(lambda x: x[:1], differentiable=True, reference="bad")
    with pytest.raises(SurrogateError, match="returned .* for 3 designs"):
        bad(torch.ones(3, 2))


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="use one of: callable, embedding, identity, pca"):
        make_feature_map("umap")
