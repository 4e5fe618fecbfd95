r"""DAS's SMC sampler: the generic tempered SMC (``optimizer.smc.TemperedSMC``) on a
``TiltedTarget``, with the project's error types at its edge.

The algorithm (tempering, reweighting `log w += log p - log q + λ_{k+1} r_{k+1}/α - λ_k r_k/α`,
adaptive resampling, `log Ẑ`, diagnostics) lives in ``optimizer.smc.sampler`` and knows nothing
about diffusion; the diffusion pieces (DDIM moves, Tweedie look-ahead, guidance, decoding) live
in ``optimizer.das.target``.
"""
from __future__ import annotations

from optimizer.das.particles import DiffusionParticles
from optimizer.das.target import TiltedTarget
from optimizer.errors import SamplerError
from optimizer.smc.errors import NonFiniteRewardError
from optimizer.smc.sampler import SMCResult, TemperedSMC


class DASSampler(TemperedSMC[DiffusionParticles]):
    """Tempered SMC over a ``TiltedTarget``; ``run`` raises ``SamplerError`` on bad rewards.

    Args: as ``TemperedSMC`` (``model`` is the ``TiltedTarget``).

    >>> sampler = DASSampler(target, tempering=AdaptiveTempering(), resampler=systematic,
    ...                      ess_threshold=0.5, generator=torch.Generator().manual_seed(0))
    >>> result = sampler.run()  # an SMCResult: particles, log_z, history
    """

    model: TiltedTarget

    @property
    def target(self) -> TiltedTarget:
        """The ``TiltedTarget`` (the model) this sampler runs on."""
        return self.model

    def run(self) -> SMCResult[DiffusionParticles]:
        """All `K` steps (see ``TemperedSMC.run``)."""
        try:
            return super().run()
        except NonFiniteRewardError as exc:
            raise SamplerError(
                f"reward returned NaN or infinite values at step {exc.step} (0 = initial "
                f"particles) for group {exc.group}; the reward must be finite on every decoded "
                f"design, including noisy early look-ahead estimates (clip or guard it, "
                f"e.g. torch.nan_to_num(r, nan=-1e4))"
            ) from exc
