"""The SMC worker: a worker killed mid-round is replaced and the round completes identically;
the surrogate rebuilt in a worker from state bytes gives the driver's reward."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.rounds import TrainingData
from optimizer.campaign.service import make_generator, make_pool
from optimizer.campaign.surrogate import SurrogateAdapter
from optimizer.das.config import DASOptions
from optimizer.seeds import derive_seed
from optimizer.surrogate.config import SurrogateConfig
from optimizer.workers.components import load_prior_bundle
from optimizer.workers.pool import PoolEvent
from optimizer.workers.smc_worker import ChunkSpec, SMCWorkerImpl
from storage import History

CFG = parse_config({
    "name": "w", "seed": 5, "prior": {"name": "gmm-toy"},
    "oracle": {"kind": "botorch", "options": {"function": "branin"}},
    "objectives": [{"name": "y"}], "sampler": {"alpha": 1.0, "num_steps": 8},
    "workers": {"count": 2, "chunks_per_worker": 2, "particles_per_worker": 16, "cpus_per_worker": 0.5},
    "budget": {"q": 4, "total": 8},
})


@pytest.mark.parametrize("how", ["ray.kill", "process exit"])
@pytest.mark.slow
def test_worker_killed_mid_round_is_replaced_and_round_completes(ray_session: str, tmp_path: Path,
                                                                 how: str) -> None:
    killed: list[int] = []

    def kill_once(event: PoolEvent) -> None:
        if how == "ray.kill" and event.kind == "submit" and not killed:
            killed.append(event.chunk)
            ray.kill(event.actor, no_restart=True)  # its chunk is in flight right now
        if how == "process exit" and event.kind == "replaced":
            killed.append(event.chunk)

    flag = tmp_path / "die"
    if how == "process exit":
        flag.touch()  # the first chunk to start deletes it and os._exit()s its worker
    pool = make_pool(CFG)
    try:
        gen = make_generator(CFG, pool, on_event=kill_once)
        assert gen.surrogate.bundle.prior is None  # the driver loads the feature map only
        gen.die_flag = str(flag)
        plan = gen.plan(0, History(campaign="w"), 4, tilted_rounds_before=0)
        assert len(killed) == 1 and pool.replacements == 1 and not flag.exists()
        assert len(plan.candidates) == 64 and len(plan.selected) == 4
        assert sorted({c.group for c in plan.candidates}) == [0, 1, 2, 3]
        # the redone chunk used the same derived seed: the round regenerates identically
        gen.on_event = None
        again = gen.plan(0, History(campaign="w"), 4, tilted_rounds_before=0)
        a = np.stack([c.design for c in plan.candidates])
        b = np.stack([c.design for c in again.candidates])
        assert np.array_equal(a, b) and plan.selected == again.selected
        assert pool.replacements == 1
    finally:
        pool.shutdown()


def test_worker_rebuilds_surrogate_from_state_bytes() -> None:
    bundle = load_prior_bundle("gmm-toy", "prior")
    rng = np.random.default_rng(0)
    X = rng.uniform(-4, 4, size=(12, 2))
    Y = -((X - 1.0) ** 2).sum(1, keepdims=True)
    data = TrainingData(X=X, Y=Y, Yvar=None, X_pending=np.zeros((0,)), X_failed=np.zeros((0,)))
    adapter = SurrogateAdapter(bundle, SurrogateConfig(beta=1.0))
    fitted = adapter.fit(data)
    model, blob, meta = fitted.model, fitted.state, fitted.summary
    assert isinstance(blob, bytes) and meta["observations"] == 12

    worker = SMCWorkerImpl("gmm-toy", "prior")
    spec = ChunkSpec(round_index=1, chunk=0, seed=derive_seed(0, 1, 0), num_particles=32,
                     alpha=1.0, das=DASOptions(num_steps=8), surrogate_state=blob,
                     surrogate=adapter.config, X=X, Y=Y, Yvar=None)
    out = worker.run_chunk(spec)
    # the worker's particles carry r̂ computed by its rebuilt surrogate; the driver's agrees
    driver_reward = model.reward(beta=1.0)(torch.as_tensor(out.samples, dtype=torch.float64))
    assert np.allclose(out.rewards, driver_reward.detach().numpy(), rtol=1e-4, atol=1e-4)
    assert out.samples.shape == (32, 2) and out.ess.shape == (8,)
    assert np.isclose(np.exp(out.log_weights).sum(), 1.0)


@pytest.mark.gpu
def test_worker_on_accelerator_uses_cpu_surrogate(device: torch.device) -> None:
    """On a GPU the particles live on the device and the GP stays on the CPU; guided SMC still
    gets the driver's reward (the guidance gradient crosses devices)."""
    bundle = load_prior_bundle("gmm-toy", "prior")
    rng = np.random.default_rng(1)
    X = rng.uniform(-4, 4, size=(10, 2))
    Y = -((X - 1.0) ** 2).sum(1, keepdims=True)
    data = TrainingData(X=X, Y=Y, Yvar=None, X_pending=np.zeros((0,)), X_failed=np.zeros((0,)))
    adapter = SurrogateAdapter(bundle, SurrogateConfig(beta=1.0))
    fitted = adapter.fit(data)
    model, blob = fitted.model, fitted.state
    worker = SMCWorkerImpl("gmm-toy", "prior", device=str(device))
    assert worker.device.type == device.type
    spec = ChunkSpec(round_index=1, chunk=0, seed=7, num_particles=64, alpha=1.0,
                     das=DASOptions(num_steps=8, guidance="gradient"), surrogate_state=blob,
                     surrogate=adapter.config, X=X, Y=Y)
    out = worker.run_chunk(spec)
    driver_reward = model.reward(beta=1.0)(torch.as_tensor(out.samples, dtype=torch.float64))
    assert np.allclose(out.rewards, driver_reward.detach().numpy(), rtol=1e-3, atol=1e-3)


def test_adapter_fits_and_screens_on_one_torch_thread_and_restores() -> None:
    """With 2 threads on 2 cores shared with the SMC workers, every small GP op waited at a thread
    barrier (one q=16 screening: 7 s instead of 0.7 s); the driver's surrogate uses 1 thread."""
    from optimizer.features import IdentityFeatures
    from optimizer.workers.components import PriorBundle

    seen: list[int] = []

    class Recording(IdentityFeatures):
        def _forward(self, X: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return super()._forward(X)

    base = load_prior_bundle("gmm-toy", "prior")
    bundle = PriorBundle(name="gmm-toy", prior=base.prior, feature_map=Recording())
    rng = np.random.default_rng(2)
    X = rng.uniform(-4, 4, size=(10, 2))
    Y = -((X - 1.0) ** 2).sum(1, keepdims=True)
    data = TrainingData(X=X, Y=Y, Yvar=None, X_pending=np.zeros((0,)), X_failed=np.zeros((0,)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        adapter = SurrogateAdapter(bundle, SurrogateConfig(beta=1.0))
        model = adapter.fit(data).model
        res = adapter.screen(model, rng.uniform(-4, 4, size=(40, 2)), 3, pending=np.zeros((0,)),
                             observed=np.zeros((0,)), seed=0)
        assert len(res.selected) == 3
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # restored for the rest of the process
    finally:
        torch.set_num_threads(before)
