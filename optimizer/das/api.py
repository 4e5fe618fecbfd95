"""``sample``: align a diffusion prior to a reward at test time (DAS), in one call."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from optimizer.das.algorithm import DASSampler
from optimizer.das.config import DASConfig, make_config
from optimizer.das.result import DASResult
from optimizer.das.schedule import DDIMSchedule, ScheduleConfig
from optimizer.das.target import Reward, TiltedTarget
from optimizer.errors import ConfigError
from optimizer.smc.errors import SMCConfigError
from optimizer.smc.resampling import get_resampler
from optimizer.smc.tempering import TemperingSchedule, make_tempering


def sample(
    prior: Any,
    reward: Reward,
    *,
    num_particles: int,
    alpha: float,
    num_steps: int = 100,
    conditions: Sequence[Any] | None = None,
    tempering: str | TemperingSchedule = "adaptive",
    guidance: Literal["auto", "gradient", "tweedie", "none"] = "auto",
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    gradient_checkpointing: bool = False,
    dtype: torch.dtype | None = None,
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "linspace",
    clip_sample: float | None = None,
    rejuvenation: Literal["none", "mh", "mala"] = "none",
    rejuvenation_steps: int = 1,
    rejuvenation_step: float = 0.5,
) -> DASResult:
    r"""Sample `π(x) ∝ p_pre(x) exp(r(x)/α)` with tempered SMC over a diffusion prior (DAS).

    `π_k(x_{t_k}) ∝ p(x_{t_k}) exp(λ_k r(D(x̂0(x_{t_k})))/α)`, `λ: 0 → 1`, DDIM η=1 moves.

    1. draw `G x P` particles `x_{t_0} ~ N(0, I)` (`G` = number of ``conditions``, or 1);
    2. for each of the `K` steps: pick `λ_{k+1}` (``tempering``), move (guided or prior
       proposal), reweight, resample the groups whose `ESS < κ P` (``resampling``);
    3. weight the final `x_0` with the exact reward `r(D(x_0))` and return all particles.

    Args:
        prior: a ``DiffusionPrior`` (see ``optimizer.priors.base``).
        reward: `r(x)`: `B x *design_shape` → `B`, on decoded designs. Set the attribute
            ``reward.differentiable = False`` for a black-box reward (gradient-free mode), and
            ``reward.constant_value = c`` for a reward known to return `c` for every design
            (e.g. 0: the plain prior); then `x̂0` is never decoded and the reward never called
            (only `x_0`, for the samples), with the same result.
        num_particles: `P` per group.
        alpha: `α > 0`; smaller trusts the reward more.
        num_steps: `K`, independent of the prior's training steps.
        conditions: one entry per group (prompts, contexts); None → one group.
        tempering: ``"adaptive"`` (default), ``"exponential"``, ``"polynomial"`` or a
            ``TemperingSchedule`` object.
        guidance: ``"gradient"``, ``"tweedie"``, ``"none"``, or ``"auto"`` (``"gradient"`` if
            ``reward.differentiable``, default True, else ``"none"``). ``"tweedie"`` shifts the
            proposal by `sqrt(ā_t) ∇_{x̂0} r(D(x̂0))` (Tweedie's `∂x̂0/∂x_t` for a
            unit-variance prior instead of the denoiser's Jacobian): one backward pass through
            the decoder and reward, none through the denoiser; the weights keep the target
            exact, the ESS may be lower than with ``"gradient"`` (``optimizer.das.guidance``).
        resampling: ``"systematic"`` (default), ``"stratified"``, ``"multinomial"``,
            ``"residual"`` or ``"ssp"``.
        ess_threshold: `κ` in `[0, 1]`.
        generator: ``torch.Generator`` on the prior's device; same seed → same result.
        chunk_size: rows per prior/reward call (memory control; same result as unchunked).
        gradient_checkpointing: recompute prior / decoder activations in the backward pass.
        dtype: particle dtype (default ``prior.dtype``); weights are at least float32.
        timestep_spacing: ``"linspace"``, ``"leading"`` or ``"trailing"``.
        clip_sample: clamp `x̂0` to `[-c, c]` at every step (diffusers' ``clip_sample``), or
            None. Use it with schedules whose first `ā` vanishes (``squaredcos_cap_v2``:
            `ā_{T-1} ≈ 1e-9`), where an imperfect network's `x̂0` explodes; exact priors and
            linear schedules do not need it. The result then targets the clipped sampler's prior.
            Without clipping, ``timestep_spacing="leading"`` also avoids that step (it starts
            at `t = (K-1)·(T // K)`, `ā ≈ 2e-4` for the cosine schedule at `K = 100`).
        rejuvenation: ``"none"`` (default), ``"mh"`` or ``"mala"``: after each resampling, an
            MCMC move of `x_{t_k}` that leaves `π_k` invariant (``optimizer.das.rejuvenation``),
            so copies of one parent spread apart without biasing the target.
        rejuvenation_steps: moves per resampling event (each one more prior + reward call).
        rejuvenation_step: `β` of ``"mh"`` (1: redraw from the parent's transition) or
            `τ = h/σ²` of ``"mala"``, in (0, 1].

    Returns:
        A ``DASResult``: ``samples`` `[G x] P x *design_shape`, normalized ``log_weights``,
        ``rewards``, diagnostics `T x G`, ``log_normalizer`` `G`.

    >>> gm = GaussianMixturePrior(means, covs, weights)
    >>> res = sample(gm, lambda x: -(x ** 2).sum(-1), num_particles=256, alpha=1.0,
    ...              generator=torch.Generator().manual_seed(0))
    >>> res.weighted_mean()  # estimate of E_π[x]
    """
    sampler, config = build_sampler(
        prior, reward, num_particles=num_particles, alpha=alpha, num_steps=num_steps,
        conditions=conditions, tempering=tempering, guidance=guidance, resampling=resampling,
        ess_threshold=ess_threshold, generator=generator, chunk_size=chunk_size,
        gradient_checkpointing=gradient_checkpointing, dtype=dtype,
        timestep_spacing=timestep_spacing, clip_sample=clip_sample, rejuvenation=rejuvenation,
        rejuvenation_steps=rejuvenation_steps, rejuvenation_step=rejuvenation_step,
    )
    schedule = sampler.target.schedule
    run = sampler.run()
    particles, history = run.particles, run.history

    grouped = conditions is not None
    pick = (lambda v: v) if grouped else (lambda v: v[0])  # noqa: E731
    return DASResult(
        samples=pick(particles.design),  # decoded once, by the final exact-reward evaluation
        latents=pick(particles.x),
        log_weights=pick(torch.log_softmax(particles.log_w, dim=-1)),
        rewards=pick(particles.lookahead),
        origin=pick(particles.origin),
        ess=history.ess,
        lambdas=history.lambdas,
        resampled=history.resampled,
        lookahead_reward=history.mean_reward,
        ancestors=history.ancestors,
        accept_rate=history.accept_rate,
        log_normalizer=run.log_z,
        timesteps=tuple(schedule.timesteps),
        config=config,
    )


def build_sampler(
    prior: Any,
    reward: Reward,
    *,
    num_particles: int,
    alpha: float,
    num_steps: int = 100,
    conditions: Sequence[Any] | None = None,
    tempering: str | TemperingSchedule = "adaptive",
    guidance: Literal["auto", "gradient", "tweedie", "none"] = "auto",
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    gradient_checkpointing: bool = False,
    dtype: torch.dtype | None = None,
    timestep_spacing: Literal["linspace", "leading", "trailing"] = "linspace",
    clip_sample: float | None = None,
    rejuvenation: Literal["none", "mh", "mala"] = "none",
    rejuvenation_steps: int = 1,
    rejuvenation_step: float = 0.5,
) -> tuple[DASSampler, DASConfig]:
    """Validate the options of ``sample`` and build its target and SMC sampler, unrun.

    For step-by-step use (``state = sampler.init()``, then ``state = sampler.step(state).state``),
    e.g. to inspect the particle state between steps. Same arguments as ``sample``.
    """
    config = make_config(
        num_particles=num_particles, alpha=alpha, num_steps=num_steps, guidance=guidance,
        resampling=resampling, ess_threshold=ess_threshold, chunk_size=chunk_size,
        gradient_checkpointing=gradient_checkpointing, timestep_spacing=timestep_spacing,
        clip_sample=clip_sample, rejuvenation=rejuvenation, rejuvenation_steps=rejuvenation_steps,
        rejuvenation_step=rejuvenation_step,
        **({"tempering": tempering} if isinstance(tempering, str) else {}),
    )
    if not callable(reward):
        raise ConfigError(f"reward={reward!r} is not callable; pass a function x -> Tensor[B]")
    try:
        schedule_obj = make_tempering(tempering)
        resampler = get_resampler(config.resampling)
    except SMCConfigError as exc:
        raise ConfigError(str(exc)) from exc
    guided = (config.guidance in ("gradient", "tweedie") or
              (config.guidance == "auto" and bool(getattr(reward, "differentiable", True))))
    if conditions is not None and isinstance(conditions, (str, bytes)):
        raise ConfigError(
            f"conditions={conditions!r} is a single string; pass a list (one entry per group)"
        )
    if generator is not None and generator.device.type != torch.device(prior.device).type:
        raise ConfigError(
            f"generator is on {generator.device} but the prior runs on {prior.device}; create "
            f"it with torch.Generator(device={str(prior.device)!r}).manual_seed(seed)"
        )
    num_groups, context = prior.prepare_context(conditions, config.num_particles)
    schedule = DDIMSchedule(prior.alphas_cumprod, ScheduleConfig(
        num_steps=config.num_steps, timestep_spacing=config.timestep_spacing))
    target = TiltedTarget(
        prior, reward, alpha=config.alpha, schedule=schedule, num_groups=num_groups,
        num_particles=config.num_particles, context=context, guided=guided,
        chunk_size=config.chunk_size, gradient_checkpointing=config.gradient_checkpointing,
        dtype=dtype, clip_sample=config.clip_sample,
        constant_reward=getattr(reward, "constant_value", None),
        rejuvenation=config.rejuvenation, rejuvenation_step=config.rejuvenation_step,
        tweedie=config.guidance == "tweedie",
    )
    sampler = DASSampler(target, tempering=schedule_obj, resampler=resampler,
                         ess_threshold=config.ess_threshold, generator=generator,
                         rejuvenation_steps=(0 if config.rejuvenation == "none"
                                             else config.rejuvenation_steps))
    return sampler, config
