"""A prior folder packed by the driver is rebuilt on a node that cannot read it (or reads a
different folder at that path), and used in place where the node has the same files."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from optimizer.das import sample
from optimizer.errors import PreflightError
from optimizer.priors.registry import load_prior
from optimizer.workers.components import zero_reward
from optimizer.workers.prior_files import pack_prior, prior_path_on_this_node


@pytest.fixture
def node_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This "node"'s temporary directory."""
    d = tmp_path / "node-tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _copy(src: str, dest: Path) -> str:
    shutil.copytree(src, dest)
    return str(dest)


def test_bundled_priors_are_not_packed() -> None:
    assert pack_prior("gmm-toy") is None and pack_prior("manifold") is None


def test_readable_folder_is_used_in_place(tiny_prior_path: str, tmp_path: Path, node_tmp: Path) -> None:
    folder = _copy(tiny_prior_path, tmp_path / "prior")
    packed = pack_prior(folder)
    assert packed is not None and packed.nbytes == sum(len(b) for b in packed.files.values())
    assert set(packed.files) == {p.relative_to(folder).as_posix()
                                 for p in Path(folder).rglob("*") if p.is_file()}
    assert prior_path_on_this_node(packed) == (str(Path(folder).resolve()), "local")
    assert not (node_tmp / "tiltloop-priors").exists()


def test_missing_folder_is_rebuilt_and_loads_the_same_prior(tiny_prior_path: str, tmp_path: Path,
                                                            node_tmp: Path) -> None:
    folder = _copy(tiny_prior_path, tmp_path / "prior")
    packed = pack_prior(folder)
    assert packed is not None
    shutil.rmtree(folder)  # this node cannot see the driver's folder
    path, how = prior_path_on_this_node(packed)
    assert how == "shipped" and Path(path).is_relative_to(node_tmp)
    for rel, data in packed.files.items():
        assert (Path(path) / rel).read_bytes() == data
    draws = [sample(load_prior(p), zero_reward, num_particles=8, alpha=1.0, num_steps=5,
                    guidance="none", generator=torch.Generator().manual_seed(0)).samples
             for p in (tiny_prior_path, path)]
    assert torch.equal(draws[0], draws[1])  # the same weights: the same draws
    assert prior_path_on_this_node(packed) == (path, "shipped")  # once per node and digest


def test_a_different_folder_at_the_same_path_is_not_used(tiny_prior_path: str, tmp_path: Path,
                                                         node_tmp: Path) -> None:
    folder = _copy(tiny_prior_path, tmp_path / "prior")
    packed = pack_prior(folder)
    assert packed is not None
    weights = next(p for p in Path(folder).rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # a stale copy on this node
    path, how = prior_path_on_this_node(packed)
    assert how == "shipped" and path != folder


def test_a_folder_too_large_to_ship_is_refused(tiny_prior_path: str) -> None:
    with pytest.raises(PreflightError, match=r"field `prior.name`: the prior folder .*tiny-mlp is "
                                             r"larger than .* too large to ship"):
        pack_prior(tiny_prior_path, limit=100)
