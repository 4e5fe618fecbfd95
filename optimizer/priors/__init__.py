"""Diffusion priors: adapters that expose a pretrained model to the DAS sampler."""
from optimizer.priors.base import DiffusionPrior, tweedie_x0

__all__ = ["DiffusionPrior", "tweedie_x0"]
