"""DAS: test-time alignment of a diffusion prior to a reward by tempered SMC.

>>> from optimizer.das import sample
>>> res = sample(prior, reward, num_particles=16, alpha=0.01)
"""
from optimizer.das.api import build_sampler, sample
from optimizer.das.config import DASConfig
from optimizer.das.result import DASResult

__all__ = ["DASConfig", "DASResult", "build_sampler", "sample"]
