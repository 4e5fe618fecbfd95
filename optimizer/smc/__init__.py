"""Sequential Monte Carlo machinery in pure torch: particles, weights, resampling, tempering.

Everything works on a batch of `G` independent groups x `P` particles, on the tensors' device,
without host synchronization, so a sampler loop built on it never waits on the accelerator.
"""
from optimizer.smc.particles import Particles
from optimizer.smc.resampling import RESAMPLERS, get_resampler, resample_groups
from optimizer.smc.tempering import (
    AdaptiveTempering,
    ExponentialTempering,
    PolynomialTempering,
    TemperingSchedule,
    make_tempering,
)
from optimizer.smc.weights import conditional_ess_fraction, ess, normalize_log_weights

__all__ = [
    "RESAMPLERS",
    "AdaptiveTempering",
    "ExponentialTempering",
    "Particles",
    "PolynomialTempering",
    "TemperingSchedule",
    "conditional_ess_fraction",
    "ess",
    "get_resampler",
    "make_tempering",
    "normalize_log_weights",
    "resample_groups",
]
