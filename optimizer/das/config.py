"""The DAS run options, validated once into a frozen pydantic model (JSON-storable)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optimizer.errors import ConfigError, format_choice_error
from optimizer.smc.resampling import RESAMPLERS


class DASOptions(BaseModel):
    """The DAS options shared by one ``sample`` call and a campaign's ``[sampler]`` table.

    Attributes:
        num_steps: `K` sampling steps (network evaluations), at most the prior's `T_train`.
        tempering: how `λ` rises from 0 to 1: ``adaptive`` (next `λ` keeps the ESS at a target),
            ``exponential`` (the paper's `λ_i = min((1+γ)^i − 1, 1)`), ``polynomial``, or
            ``predictive`` (adaptive, also budgeting for the next move's look-ahead spread).
        guidance: ``gradient`` (guided proposal), ``tweedie`` (guided by `sqrt(ā) ∇_{x̂0} r`,
            Tweedie's Jacobian: no backward pass through the denoiser; the weights keep the
            target exact),
            ``none`` (prior transition), or ``auto`` (``gradient`` if
            ``getattr(reward, "differentiable", True)``, else ``none``).
        resampling: name of a scheme in ``optimizer.smc.RESAMPLERS``.
        ess_threshold: `κ`; a group is resampled when its `ESS < κ P`.
        chunk_size: rows per prior/reward call (None: all at once).
        gradient_checkpointing: recompute activations in the backward pass.
        timestep_spacing: how the `K` timesteps are picked (diffusers' names).
        clip_sample: clamp `x̂0` to `[-c, c]` (diffusers' ``clip_sample_range``), or None.
        rejuvenation: MCMC move after each resampling that leaves the target invariant and
            spreads copies of one parent apart: ``none``, ``mh`` (gradient-free) or ``mala``
            (guided runs only). Costs one more network + reward evaluation per particle of a
            resampled group and move.
        rejuvenation_steps: moves after each resampling (when ``rejuvenation`` is not none).
        rejuvenation_step: the move's step in (0, 1]: `β` of ``mh`` (1: redraw from the parent's
            transition), `τ = h/σ²` of ``mala``; smaller is accepted more often but moves less.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    num_steps: int = Field(100, ge=1, le=10_000)
    tempering: str = "adaptive"
    guidance: Literal["auto", "gradient", "tweedie", "none"] = "auto"
    resampling: str = "systematic"
    ess_threshold: float = Field(0.5, ge=0.0, le=1.0)
    chunk_size: int | None = Field(None, ge=1, le=2**31 - 1)
    gradient_checkpointing: bool = False
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "linspace"
    clip_sample: float | None = Field(None, gt=0)
    rejuvenation: Literal["none", "mh", "mala"] = "none"
    rejuvenation_steps: int = Field(1, ge=1, le=100)
    rejuvenation_step: float = Field(0.5, gt=0.0, le=1.0)

    @field_validator("resampling")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if v not in RESAMPLERS:
            raise ValueError(format_choice_error("resampling", v, tuple(RESAMPLERS)))
        return v

    @field_validator("tempering")
    @classmethod
    def _known_tempering(cls, v: str) -> str:
        if v not in TEMPERING_NAMES:
            raise ValueError(format_choice_error("tempering", v, TEMPERING_NAMES))
        return v

    def sample_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of :func:`optimizer.das.sample`."""
        return self.model_dump()


class DASConfig(DASOptions):
    """Options of one DAS run (the tempering object, if any, is passed separately).

    Attributes:
        num_particles: `P` per group.
        alpha: `α > 0` of the target `p_pre(x) exp(r(x)/α)`.
        (the rest: :class:`DASOptions`)
    """

    num_particles: int = Field(ge=1)
    alpha: float = Field(gt=0)


#: Tempering schedules by name (``optimizer.smc.tempering.make_tempering``).
TEMPERING_NAMES = ("adaptive", "exponential", "polynomial", "predictive")

_REMEDIES = {
    "num_particles": "pass an integer >= 1 (e.g. 16)",
    "alpha": "pass a positive float (smaller α trusts the reward more, e.g. 0.01)",
    "num_steps": "pass an integer >= 1 (e.g. 100)",
    "ess_threshold": "pass κ in [0, 1] (0.5 is the usual choice)",
    "chunk_size": "pass None or an integer >= 1",
    "guidance": "pass 'auto', 'gradient', 'tweedie' (no backward pass through the denoiser) or "
                "'none'",
    "tempering": "pass 'adaptive', 'exponential', 'polynomial' or 'predictive' (or a "
                 "TemperingSchedule object)",
    "timestep_spacing": "pass 'linspace', 'leading' or 'trailing'",
    "clip_sample": "pass None or the x̂0 range c > 0 (1.0 for pixel images in [-1, 1])",
    "rejuvenation": "pass 'none', 'mh' (gradient-free) or 'mala' (guided runs only)",
    "rejuvenation_steps": "pass an integer in [1, 100] (1-2 is usual)",
    "rejuvenation_step": "pass a step in (0, 1] (0.5 is a good start)",
}


def make_config(**options: object) -> DASConfig:
    """Build a ``DASConfig``; invalid options raise ``ConfigError`` naming field, value, remedy."""
    try:
        return DASConfig(**options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "options"
            remedy = _REMEDIES.get(field, "see optimizer.das.DASConfig")
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{field}={err.get('input')!r}: {msg}; {remedy}")
        raise ConfigError("invalid DAS option: " + "; ".join(lines)) from None
