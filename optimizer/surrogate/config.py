"""``SurrogateConfig``: every option of the surrogate, stored with the campaign (JSON)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SurrogateConfig(BaseModel):
    """Options of the GP surrogate, its reward and pre-screening.

    Attributes:
        maximize: per objective (or one bool for all): True to maximize, False to minimize.
            Reward and acquisition are always "higher is better" after this sign flip.
        weights: scalarization weights, one per objective (None: all 1).
        scalarization: ``"weighted_sum"`` `Σ w_j s_j y_j` or ``"chebyshev"``
            `min_j w_j ỹ_j + ρ Σ_j w_j ỹ_j` on signed outcomes scaled to [0, 1] by the data;
            ``"parego"``: Chebyshev with weights drawn uniformly on the simplex per SMC chunk of
            each round (ParEGO; ``optimizer.surrogate.pareto``), so a round's population spreads
            over the Pareto front; it makes ``"qlognehvi"`` the default acquisition.
        chebyshev_rho: `ρ`, the augmentation that breaks Chebyshev ties.
        beta: `β` of the reward `μ + β σ` that tilts SMC (0 = plain mean); qUCB uses the same β.
        acquisition: how screening picks the q designs among the particles: ``"qlognei"``
            (qLogNoisyExpectedImprovement, robust to noise), ``"qucb"`` (`μ + β σ`) or
            ``"qlognehvi"`` (qLogNoisyExpectedHypervolumeImprovement over all objectives, at least
            two; the default with ``scalarization = "parego"``, ``"qlognei"`` otherwise).
        reference_point: the hypervolume's reference point, one entry per objective in the
            orientation of the surrogate's `Y` (the loop's: minimized objectives sign-flipped,
            ``config_pareto.signed_reference``), None entries inferred from the data (BoTorch's
            ``infer_reference_point``). A campaign sets it from ``[[objectives]] reference``.
        threads: torch intra-op threads for fit and screening (1 suits campaign-sized GPs; more
            threads on cores shared with SMC workers made one screening ~10x slower).
        min_noise: floor on reported noise variances (`Yvar`) relative to each outcome's
            variance (standardized units, like BoTorch's own noise floors), so duplicate designs
            with zero reported noise still give a positive-definite kernel in any unit.
        fit_subset_size: hyperparameters are fitted on at most this many observations (the best
            quarter plus a seeded random rest); the posterior still conditions on all data.
        max_conditioning_size: above this many observations the posterior also conditions on a
            subset of this size (exact GP cost is `O(n³)`).
        fit_maxiter: L-BFGS iteration cap per objective and fit.
        fit_timeout_s: optional wall-clock cap per objective's fit (None: none; a cap makes
            the fit depend on machine speed, so it is off by default for reproducibility).
        num_mc_samples: quasi-MC samples for qLogNEI / qUCB.
        cholesky_max_size: GPyTorch uses Cholesky (exact, deterministic) up to this many points.
        screen_prefilter_size: screening gives qLogNEI / qUCB at most this many candidates,
            chosen by Pareto layers of the scalarized posterior (mean, std), which always hold
            the single-candidate EI maximizer (None: all candidates).
        screen_max_baseline: qLogNEI's baseline is at most this many observations, those that
            can plausibly be the best (`μ + 3σ ≥ max(μ − 3σ)`; None: all conditioned ones).
        screen_local_size: above this many conditioned observations the prefilter's cheap
            score (mean, std of every candidate) conditions on a local subset of this size (the
            best eighth by outcome plus the candidates' nearest observations; None: all).
        screen_exact_max_observations: the acquisition (qLogNEI / qUCB over the kept
            candidates) uses the exact posterior up to this many conditioned observations, and a
            local subset of ``screen_local_size`` chosen around the kept candidates above it
            (None: always exact).
        screen_family_keep: candidates kept per ancestor family (SMC founder per chunk) before
            the prefilter, so one family after an ESS collapse cannot fill the prefilter.
        screen_family_margin: a second (third, ...) member of a family already in the batch is
            picked over the best candidate of a less-picked family only when its acquisition is
            higher by this margin (qLogNEI: expected improvement given the earlier picks, as a
            fraction of the first pick's; qUCB: in units of the std of the scalarized observed
            outcomes).
        num_constraints: the last this many output columns of `Y` are outcome constraints
            (signed: feasible ⇔ `c(x) ≤ 0`), modelled by their own GPs and left out of the
            scalarization; reward and acquisition weigh by the probability of feasibility
            (``optimizer.surrogate.constraints``). Set by the campaign loop from
            ``[[constraints]]``.
        seed: seed of the subset choice (reproducible fits).
        dtype: the GP's floating dtype (float64 recommended).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    maximize: bool | tuple[bool, ...] = True
    weights: tuple[float, ...] | None = None
    scalarization: Literal["weighted_sum", "chebyshev", "parego"] = "weighted_sum"
    chebyshev_rho: float = Field(0.05, ge=0.0)
    beta: float = Field(1.0, ge=0.0)
    acquisition: Literal["qlognei", "qucb", "qlognehvi"] = "qlognei"
    reference_point: tuple[float | None, ...] | None = None
    threads: int = Field(1, ge=1, le=256)
    min_noise: float = Field(1e-6, gt=0.0)
    fit_subset_size: int = Field(300, ge=2)
    max_conditioning_size: int = Field(4000, ge=2)
    fit_maxiter: int = Field(150, ge=1)
    fit_timeout_s: float | None = Field(None, gt=0.0)
    num_mc_samples: int = Field(128, ge=1)
    cholesky_max_size: int = Field(10_000, ge=1)
    screen_prefilter_size: int | None = Field(128, ge=1)
    screen_max_baseline: int | None = Field(64, ge=1)
    screen_local_size: int | None = Field(2000, ge=2)
    screen_exact_max_observations: int | None = Field(2000, ge=2)
    screen_family_keep: int = Field(2, ge=1)
    screen_family_margin: float = Field(0.2, ge=0.0)
    num_constraints: int = Field(0, ge=0, le=16)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    dtype: Literal["float64", "float32"] = "float64"

    @model_validator(mode="before")
    @classmethod
    def _pareto_default(cls, data: Any) -> Any:
        # a Pareto campaign (ParEGO tilt) screens by hypervolume unless told otherwise
        if isinstance(data, dict) and data.get("scalarization") == "parego" \
                and "acquisition" not in data:
            data = {**data, "acquisition": "qlognehvi"}
        return data

    @model_validator(mode="after")
    def _check(self) -> SurrogateConfig:
        if self.max_conditioning_size < self.fit_subset_size:
            raise ValueError(
                f"max_conditioning_size={self.max_conditioning_size} must be >= "
                f"fit_subset_size={self.fit_subset_size}"
            )
        if self.weights is not None and any(w < 0 for w in self.weights):
            raise ValueError(f"weights={self.weights} must be non-negative")
        return self
