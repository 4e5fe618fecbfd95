"""``[pipeline]`` of a campaign config: how rounds overlap the oracle (``optimizer.campaign.pipeline``).

    [pipeline]
    mode = "async"          # generate and screen on background threads; the driver keeps polling
    regenerate_every = 8    # a fresh SMC population after this many new results (default: budget.q)
    refit_every = 32        # re-screening refits the GP after this many results (default 4·regenerate_every)
    rescore = "auto"        # re-screen the pool with the new results before a batch goes out
    select_mc_samples = 64  # quasi-MC samples of a selection's qLogNEI (cheap re-screenings)
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PipelineConfig(BaseModel):
    """How round generation overlaps the oracle.

    ``mode = "sync"``: the driver generates a round on its own thread when the in-flight limit
    leaves room for ``q`` more queries; nothing is polled or sent while it fits, samples and
    screens. ``mode = "async"``: SMC populations are generated on a background thread while the
    driver keeps polling, storing results and sending; a population is a pool of candidates from
    which several batches are selected (each recorded as its own round), re-screened as results
    arrive, pending points respected, so a batch is ready the moment slots free up. A fresh
    population is generated after ``regenerate_every`` new results, or when fewer than
    ``min_pool`` candidates are left.

    Re-screening (fill first, then rescore): when slots free up, the next ready batch goes out at
    once; the pool is re-screened in the background with the new results for the batches after
    the ones expected to go out meanwhile (their designs count as pending), a few batches at a
    time (each batch of a list is screened with the results known when the list was made). Its
    surrogate, and a new population's tilt, is the newest full fit *conditioned* on the results
    since, hyperparameters held (milliseconds; ``optimizer.surrogate.condition``); the
    hyperparameters are re-optimized when ``refit_every`` results arrived since the newest full
    fit.

    ``rescore``: whether a ready batch screened before the latest results waits for a
    re-screening: ``never`` (it goes at once), ``always`` (it waits), ``auto`` (waits only when
    re-screening typically takes — the median of the recent ones, scaled to the batches the free
    slots take — at most ``rescore_fraction`` of the oracle's median latency: a lab that takes
    hours always gets fresh batches; a 5-second simulation waits only for a re-screening under a
    tenth of a second). A re-screening the oracle waits for holds one batch per free ``q`` slots.
    Selections screen with ``select_mc_samples`` quasi-MC samples, fewer than a sync round's."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    mode: Literal["sync", "async"] = Field(
        default="sync", description='"async": generate and screen while the oracle works '
                                    '(keeps the oracle busy); "sync": one round at a time')
    regenerate_every: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="async: a fresh SMC population after this many new results (default budget.q)")
    min_pool: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="async: a fresh population when fewer unused candidates are left (default 2·q)")
    refit_every: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="async: re-screening and new populations re-optimize the surrogate's "
                    "hyperparameters once this many results arrived since the newest full fit; "
                    "between full fits they condition that fit on the new results "
                    "(default 4·regenerate_every; 1: always refit)")
    rescore: Literal["auto", "always", "never"] = Field(
        default="auto", description="async: whether a batch screened before the latest results "
                                    "waits for a re-screening before it goes out")
    rescore_fraction: float = Field(
        default=0.02, gt=0.0, le=1.0,
        description="auto: wait for a re-screening when it typically takes (median of the recent "
                    "ones) at most this fraction of the oracle's median latency (the idle time "
                    "accepted for a fresher batch)")
    select_mc_samples: int | None = Field(
        default=64, ge=1, le=65_536,
        description="async: quasi-MC samples of a selection's acquisition (fewer than a sync "
                    "round's: a re-screening the oracle may wait for costs about half as much; "
                    "None: the surrogate's num_mc_samples)")
    stop_wait_s: float = Field(
        default=600.0, gt=0.0, le=86_400.0,
        description="async: seconds a stopping driver waits for a background generation to end "
                    "(then it leaves it, with a warning; nothing it made was sent)")
