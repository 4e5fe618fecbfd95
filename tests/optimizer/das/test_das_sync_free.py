"""The step loop never reads a tensor value on the host.

``torch.cuda.set_sync_debug_mode`` needs a GPU; on any device we instead intercept the
operations that force a device → host transfer (``aten._local_scalar_dense`` is what
``.item()``, ``bool(t)``, ``int(t)``, ``float(t)`` and a Python ``if`` on a tensor call;
``nonzero`` / ``masked_select`` / ``unique`` have data-dependent shapes) plus ``.tolist()``,
``.cpu()`` and ``.numpy()``, and count them during ``DASSampler.step``.
"""
from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from optimizer.das import build_sampler
from optimizer.smc import RESAMPLERS

SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique")
SYNC_METHODS = {"tolist", "cpu", "numpy", "item", "__bool__", "__int__", "__float__"}


class SyncCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.hits.append(name)
        return func(*args, **(kwargs or {}))


class MethodCounter(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNC_METHODS:
            self.hits.append(name)
        return func(*args, **(kwargs or {}))


def _reward(x):
    return -(x**2).sum(-1)


@pytest.mark.parametrize("guidance", ["gradient", "none"])
@pytest.mark.parametrize("scheme", sorted(RESAMPLERS))
@pytest.mark.parametrize("tempering", ["adaptive"])
def test_step_loop_has_no_host_sync(gm, guidance, scheme, tempering):
    sampler, _ = build_sampler(gm, _reward, num_particles=16, alpha=0.5, num_steps=6,
                               conditions=[0, 1], guidance=guidance, resampling=scheme,
                               tempering=tempering, ess_threshold=0.9,
                               generator=torch.Generator(device=gm.device).manual_seed(0))
    state = sampler.init()  # warms the prior's per-timestep caches too
    for k in range(sampler.num_steps):  # warm every timestep's cache first (outside the count)
        gm.predict_noise(state.particles.x[0], sampler.target.schedule.timesteps[k])
    records = []
    dispatch, methods = SyncCounter(), MethodCounter()
    with dispatch, methods:
        for _ in range(sampler.num_steps):
            out = sampler.step(state)
            state = out.state
            records.append(out.record)
    assert dispatch.hits == [] and methods.hits == [], (dispatch.hits, methods.hits)
    assert bool(torch.stack([r.resampled for r in records]).any())  # after the loop: it did


def test_the_counter_does_see_a_sync():
    """Sanity check of the instrument itself."""
    dispatch, methods = SyncCounter(), MethodCounter()
    with dispatch, methods:
        t = torch.ones(3)
        if t.sum() > 0:
            t.tolist()
    assert "_local_scalar_dense" in dispatch.hits and "tolist" in methods.hits
