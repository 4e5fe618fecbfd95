"""Sequential Monte Carlo machinery in pure torch: a Feynman–Kac model protocol, a tempered SMC
algorithm over it, particles, weights, resampling, tempering.

Everything works on a batch of `G` independent groups x `P` particles, on the tensors' device,
without host synchronization, so a sampler loop built on it never waits on the accelerator.
This package imports only torch and the standard library; its errors are in ``smc.errors``.
"""
from optimizer.smc.errors import NonFiniteRewardError, SMCConfigError, SMCError
from optimizer.smc.model import FeynmanKacModel, Move, RejuvenatingModel, Rejuvenation
from optimizer.smc.particles import Particles
from optimizer.smc.resampling import RESAMPLERS, get_resampler, resample_groups
from optimizer.smc.sampler import (
    History,
    SMCResult,
    SMCState,
    StepOutput,
    StepRecord,
    TemperedSMC,
    log_potential,
)
from optimizer.smc.tempering import (
    AdaptiveTempering,
    ExponentialTempering,
    IncrementObserver,
    PolynomialTempering,
    PredictiveTempering,
    TemperingSchedule,
    make_tempering,
)
from optimizer.smc.weights import conditional_ess_fraction, ess, normalize_log_weights

__all__ = [
    "RESAMPLERS",
    "AdaptiveTempering",
    "ExponentialTempering",
    "FeynmanKacModel",
    "History",
    "IncrementObserver",
    "Move",
    "NonFiniteRewardError",
    "Particles",
    "PolynomialTempering",
    "PredictiveTempering",
    "RejuvenatingModel",
    "Rejuvenation",
    "SMCConfigError",
    "SMCError",
    "SMCResult",
    "SMCState",
    "StepOutput",
    "StepRecord",
    "TemperedSMC",
    "TemperingSchedule",
    "conditional_ess_fraction",
    "ess",
    "get_resampler",
    "log_potential",
    "make_tempering",
    "normalize_log_weights",
    "resample_groups",
]
