"""The optimizer's error hierarchy: one base class, a few kinds.

Every message names the field (or callable), the offending value and the remedy, so a scientist
reading a campaign log knows what to change without opening the source.

Other optimizer modules may append one class here if they need a new kind (re-read first).
"""
from __future__ import annotations

from tiltloop.errors import TiltloopError


class OptimizerError(TiltloopError):
    """Base class of every error raised by ``optimizer``."""


class ConfigError(OptimizerError, ValueError):
    """A sampler / prior / loop option is invalid (wrong value, unknown name, bad combination)."""


class PriorError(OptimizerError, ValueError):
    """A diffusion prior was built from inconsistent parameters (shapes, weights, schedule)."""


class SamplerError(OptimizerError, RuntimeError):
    """The sampler could not produce a valid weighted particle set (e.g. the reward returned a
    wrong shape or non-finite values)."""


def format_choice_error(field: str, value: object, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown name among a closed set of choices."""
    return f"{field}={value!r} is not a known choice; use one of: {', '.join(sorted(valid))}"


class SurrogateError(OptimizerError, ValueError):
    """The surrogate or pre-screening got unusable data or state (NaN rows, wrong shapes, a
    serialized state that does not match the training data or feature map)."""


class CampaignError(OptimizerError):
    """Base of every campaign-loop error (config, preflight, run state, worker pool)."""


class CampaignConfigError(CampaignError):
    """A campaign config file is invalid; the message names the file and every bad field."""


class PreflightError(CampaignError):
    """A component named by a valid config cannot be used (unknown prior, unreachable oracle)."""


class CampaignStateError(CampaignError):
    """The requested action does not fit the campaign's stored state (e.g. it already exists)."""


class WorkerPoolError(CampaignError):
    """The SMC worker pool could not finish a round (a chunk failed more times than allowed)."""
