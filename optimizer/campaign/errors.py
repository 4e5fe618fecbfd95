"""Errors of the campaign loop: one small hierarchy, messages name the field / query and the remedy."""
from __future__ import annotations

from optimizer.errors import OptimizerError


class CampaignError(OptimizerError):
    """Base of every campaign-loop error (config, preflight, run state)."""


class CampaignConfigError(CampaignError):
    """A campaign config file is invalid; the message names the file and every bad field."""


class PreflightError(CampaignError):
    """A component named by a valid config cannot be used (unknown prior, unreachable oracle)."""


class CampaignStateError(CampaignError):
    """The requested action does not fit the campaign's stored state (e.g. it already exists)."""


class WorkerPoolError(CampaignError):
    """The SMC worker pool could not finish a round (a chunk failed more times than allowed)."""
