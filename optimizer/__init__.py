"""tiltloop's optimizer: diffusion priors, the DAS sampler, the surrogate and the campaign loop."""
