"""Test helper: plain samples of a prior, drawn by the DAS sampler itself."""
from __future__ import annotations

import torch

from optimizer.das import sample
from optimizer.threads import torch_threads
from optimizer.workers.components import zero_reward


def plain_samples(prior, num: int, steps: int, seed: int) -> torch.Tensor:
    """Plain prior samples: DAS with a zero reward (uniform weights, so never a resampling)."""
    gen = torch.Generator(device=prior.device).manual_seed(seed)
    with torch_threads(1):  # small ops: one thread is fastest on a shared CPU
        res = sample(prior, zero_reward, num_particles=num, alpha=1.0, num_steps=steps,
                     guidance="none", generator=gen)
    assert bool((res.resampled == 0).all())
    return res.samples
