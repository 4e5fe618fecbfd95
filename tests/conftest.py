"""Suite-wide fixtures: device and dtype come from one place so the suite can rerun on a GPU;
one Postgres schema fixture (``pg_schema``) for every test that needs a real Postgres.

    TILTLOOP_TEST_DEVICE=cuda .venv/bin/python -m pytest -m "not slow"
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import torch
from pg_schemas import admin_sql, require_postgres


# Tiny test models run fastest on one intra-op thread; more threads only contend on the
# 2-core CI machine (measured ~10x slower for a tiny UNet forward). Override with
# TILTLOOP_TEST_THREADS.
torch.set_num_threads(int(os.environ.get("TILTLOOP_TEST_THREADS", "1")))


def _test_device() -> torch.device:
    name = os.environ.get("TILTLOOP_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError(f"TILTLOOP_TEST_DEVICE={name!r} but torch sees no CUDA device")
    return torch.device(name)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device every tensor-producing test runs on."""
    return _test_device()


@pytest.fixture(scope="session")
def dtype() -> torch.dtype:
    """The floating dtype for tensor tests (TILTLOOP_TEST_DTYPE, default float32)."""
    return getattr(torch, os.environ.get("TILTLOOP_TEST_DTYPE", "float32"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` unless the suite runs on an accelerator."""
    if _test_device().type != "cpu":
        return
    skip_gpu = pytest.mark.skip(reason="needs TILTLOOP_TEST_DEVICE=cuda and a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs, no dashboard) shared by the whole test session.

    Yields the cluster's GCS address, so a campaign started in a subprocess can join it
    (``[ray] address = ...``) instead of paying for a Ray start of its own.
    """
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty Postgres schema, dropped (with everything in it) after the test.

    Skips when Postgres is unreachable, fails instead under ``TILTLOOP_REQUIRE_POSTGRES=1`` (as
    in CI). Connect to it with ``pg_schemas.postgres_schema_url(schema)``.
    """
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin_sql(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        admin_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
def tiny_prior_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-d MLP diffusion prior (random weights, seeded) saved as a prior folder."""
    from optimizer.priors.mlp import MLPDiffusionConfig, MLPDiffusionPrior

    torch.manual_seed(0)
    prior = MLPDiffusionPrior(MLPDiffusionConfig(dim=2, hidden=16, num_blocks=1, time_embed_dim=8,
                                                 num_train_timesteps=100))
    path = tmp_path_factory.mktemp("prior") / "tiny-mlp"
    prior.save_pretrained(path)
    return str(path)
