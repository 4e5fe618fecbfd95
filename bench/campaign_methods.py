"""The six methods of ``bench/campaigns.py``, each an ask/tell object for one (problem, seed).

All methods see the same oracle and the same budget (``rounds`` x ``q``); ``ask`` returns a
``Proposal`` of `q` designs (and the method's own surrogate mean at them, for the
over-optimization gap), ``tell`` gets their true values. They reuse the loop's pieces:
``SurrogateAdapter`` (fit + qLogNEI screening), ``maximin_select`` (round 0) and ``derive_seed``.

1. ``tiltloop`` — DAS on `p_pre · exp(r̂/α)`, `r̂ = μ + β σ`, then GP screening; round 0: plain
   prior particles, space-filling pick (the campaign loop's round logic, in one process);
   ``tiltloop-new`` — the loop's defaults since issue 15 (``predictive`` tempering, diverse
   batches by ancestor family); ``tiltloop`` keeps the earlier ``adaptive`` tempering, no families;
   ``tiltloop-auto`` — the same with ``alpha = "auto"`` (``optimizer.campaign.auto_alpha``: α
   from a KL budget of ``kl_budget`` nats, estimated on the round-0 prior particles, and the
   over-optimization brake on the last round's gap);
2. ``das-groups`` — DAS with `G = q` groups, each group's highest-weight particle sent;
3. ``prior-screened`` — plain prior particles screened by the same GP (`λ = 0`);
4. ``ax`` — Ax ``Client`` with its default generation strategy, raw box (optional dependency);
5. ``botorch-raw`` — SingleTaskGP + qLogNEI, ``optimize_acqf`` in the raw box of the data;
6. ``random`` — `q` plain prior samples per round.

`α` is given relative to the spread of the observed values (`α = alpha_rel · std(Y)`), so one
setting fits problems with outcomes in different units.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from bench.campaign_problems import Problem

METHODS = ("tiltloop", "tiltloop-new", "tiltloop-auto", "das-groups", "prior-screened", "ax",
           "botorch-raw", "random")
#: ablations of tiltloop-new, run only when named in --methods
ABLATIONS = ("tiltloop-predictive", "tiltloop-diverse")
AX_MISSING = "Ax: not installed (pip install -e '.[bench]')"


class MethodSettings(BaseModel):
    """Shared settings of the sampling methods (identical for every method that uses them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_particles: int = Field(256, ge=2, description="SMC particles per round (all groups)")
    num_steps: int = Field(30, ge=2, description="DAS / prior sampling steps")
    alpha_rel: float = Field(0.2, gt=0, description="α as a multiple of std(observed values)")
    beta: float = Field(1.0, ge=0, description="β of r̂ = μ + β σ")
    raw_restarts: int = Field(4, ge=1, description="optimize_acqf restarts (botorch-raw)")
    raw_samples: int = Field(256, ge=8, description="optimize_acqf raw samples (botorch-raw)")
    kl_budget: float = Field(1.0, gt=0, description="tiltloop-auto: KL budget per round (nats)")


@dataclass(frozen=True)
class Proposal:
    """One round's batch: `q x *design_shape` designs and the method's surrogate mean (or None)."""

    designs: Tensor
    predicted: np.ndarray | None = None
    #: distinct ancestor families (founders) of the batch; None: the method has no lineage
    families: int | None = None


def ax_available() -> bool:
    """True when ``ax-platform`` imports."""
    try:
        import ax.api.client  # noqa: F401
    except ImportError:
        return False
    return True


class _Base:
    def __init__(self, problem: Problem, q: int, seed: int, settings: MethodSettings) -> None:
        self.problem, self.q, self.seed, self.s = problem, q, seed, settings
        self.X: list[Tensor] = []
        self.Y: list[float] = []

    def tell(self, designs: Tensor, values: Tensor) -> None:
        self.X.extend(designs.detach().to(torch.float64))
        self.Y.extend(values.tolist())

    def _gen(self, r: int, purpose: str) -> torch.Generator:
        from optimizer.seeds import derive_seed, torch_generator

        return torch_generator(derive_seed(self.seed, r, 0, purpose))

    def _prior_particles(self, r: int, n: int) -> Tensor:
        from optimizer.das import sample
        from optimizer.workers.components import zero_reward

        res = sample(self.problem.prior, zero_reward, num_particles=n, alpha=1.0,
                     num_steps=self.s.num_steps, guidance="none", generator=self._gen(r, "prior"))
        return res.samples.detach()


class _Surrogated(_Base):
    """Methods on the prior's support with the loop's surrogate (fit, reward, screen)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        from optimizer.campaign.surrogate import SurrogateAdapter
        from optimizer.surrogate.config import SurrogateConfig
        from optimizer.workers.components import PriorBundle

        self.bundle = PriorBundle(self.problem.name, self.problem.prior, self.problem.feature_map)
        self.adapter = SurrogateAdapter(self.bundle, SurrogateConfig(beta=self.s.beta,
                                                                     seed=self.seed % (2**31)))

    def _fit(self):
        data = _Data(torch.stack(self.X).numpy(), np.asarray(self.Y)[:, None], None)
        model = self.adapter.fit(data).model
        return model

    def _alpha(self) -> float:
        return self.s.alpha_rel * max(float(np.std(self.Y)), 1e-6)

    def _space_filling(self, r: int, particles: Tensor, taken: list[int],
                       excluded: np.ndarray | None = None) -> list[int]:
        from optimizer.campaign.spacefill import maximin_select
        from optimizer.seeds import derive_seed

        feats = self.bundle.features_np(particles.numpy())
        free = np.setdiff1d(np.arange(len(particles)), taken)
        if excluded is not None and (~excluded[free]).sum() >= self.q - len(taken):
            free = free[~excluded[free]]  # skip duplicates of known designs, as the loop does
        avoid = [feats[taken]] if taken else []
        if self.X:
            avoid.append(self.bundle.features_np(torch.stack(self.X).float().numpy()))
        extra = maximin_select(feats[free], self.q - len(taken),
                               seed=derive_seed(self.seed, r, 0, "spacefill"),
                               avoid=np.concatenate(avoid) if avoid else None)
        return list(taken) + [int(free[i]) for i in extra]

    def _screened(self, r: int, model, particles: Tensor, families: np.ndarray | None = None) -> Proposal:
        from optimizer.seeds import derive_seed

        res = self.adapter.screen(model, particles.double().numpy(), self.q,
                                  pending=np.zeros((0,)), observed=np.zeros((0,)),
                                  seed=derive_seed(self.seed, r, 0, "screen"), families=families)
        sel = [int(i) for i in res.selected]
        if len(sel) < self.q:  # too few eligible (duplicates): fill space-filling, like the loop
            sel = self._space_filling(r, particles, sel, res.excluded)
        self._last_selected = sel
        pred = model.posterior_mean_std(particles[sel].double())[0][:, 0].numpy()
        return Proposal(particles[sel], pred)


@dataclass(frozen=True)
class _Data:  # the fields SurrogateAdapter.fit reads (the loop's ``TrainingData``)
    X: np.ndarray
    Y: np.ndarray
    Yvar: np.ndarray | None


class TiltLoop(_Surrogated):
    prior_sample: Tensor | None = None  # the round-0 plain prior particles
    #: the sampler's tempering and whether screening sees ancestor families (diverse batches):
    #: the settings before issue 15; ``TiltLoopDiverse`` has the campaign's current defaults
    tempering = "adaptive"
    diverse = False

    def ask(self, r: int) -> Proposal:
        from optimizer.das import sample

        if len(self.Y) < 2:
            particles = self._prior_particles(r, self.s.num_particles)
            self.prior_sample = particles
            return Proposal(particles[self._space_filling(r, particles, [])],
                            families=self.q)  # plain prior: every particle is its own founder
        model = self._fit()
        alpha = self._round_alpha(model)
        res = sample(self.problem.prior, self._reward(model, alpha),
                     num_particles=self.s.num_particles, alpha=alpha,
                     num_steps=self.s.num_steps, generator=self._gen(r, "smc"),
                     tempering=self.tempering)
        origin = res.origin.reshape(-1).cpu().numpy().astype(np.int64)
        prop = self._screened(r, model, res.samples.detach(), origin if self.diverse else None)
        picked = [int(i) for i in self._last_selected]
        return Proposal(prop.designs, prop.predicted,
                        families=len(set(res.origin.reshape(-1)[picked].tolist())))

    def _round_alpha(self, model) -> float:
        return self._alpha()

    def _reward(self, model, alpha: float):
        """The SMC reward of round α ``alpha`` (a constrained variant adds `α log PoF`)."""
        return model.reward(beta=self.s.beta)


class TiltLoopNew(TiltLoop):
    """Both issue-15 options: predictive tempering (``[sampler] tempering = "predictive"``, the
    ESS fix) and screening with ancestor families (at most a few candidates per founder family
    unless the acquisition clearly prefers more)."""

    tempering = "predictive"
    diverse = True


class TiltLoopPredictive(TiltLoop):
    """Ablation of ``tiltloop-new``: predictive tempering only."""

    tempering = "predictive"


class TiltLoopDiverse(TiltLoop):
    """The campaign's defaults: adaptive tempering and diverse batches (``surrogate.
    screen_family_keep`` / ``screen_family_margin``)."""

    diverse = True


class TiltLoopAuto(TiltLoop):
    """``alpha = "auto"``: the loop's ``choose_alpha`` on the round-0 particles, with the brake
    fed by the previous round's gap (its predictions against its true values)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._gap = None
        self._pred: np.ndarray | None = None
        self.alphas: list[float] = []

    def _round_alpha(self, model) -> float:
        from optimizer.campaign.auto_alpha import PriorSample, choose_alpha
        from optimizer.campaign.config import SamplerConfig

        assert self.prior_sample is not None
        prior = PriorSample(self.prior_sample.double().numpy(), None, 0)
        choice = choose_alpha(model.reward(beta=self.s.beta),
                              SamplerConfig(alpha="auto", kl_budget=self.s.kl_budget), prior,
                              self._gap, campaign=f"bench-{self.problem.name}-{self.seed}")
        self.alphas.append(choice.alpha)
        return choice.alpha

    def ask(self, r: int) -> Proposal:
        prop = super().ask(r)
        self._pred = prop.predicted
        return prop

    def tell(self, designs: Tensor, values: Tensor) -> None:
        from optimizer.campaign.auto_alpha import OveroptGap

        super().tell(designs, values)
        if self._pred is not None:
            self._gap = OveroptGap(round_index=len(self.alphas),
                                   gap=float(np.mean(self._pred - values.numpy())),
                                   scale=float(np.std(self.Y)))


class DASGroups(_Surrogated):
    def ask(self, r: int) -> Proposal:
        from optimizer.das import sample
        from optimizer.workers.components import zero_reward

        fitted = len(self.Y) >= 2
        model = self._fit() if fitted else None
        reward = model.reward(beta=self.s.beta) if fitted else zero_reward
        res = sample(self.problem.prior, reward, num_particles=max(2, self.s.num_particles // self.q),
                     alpha=self._alpha() if fitted else 1.0, num_steps=self.s.num_steps,
                     conditions=[None] * self.q, guidance="auto" if fitted else "none",
                     generator=self._gen(r, "smc"))
        best = res.log_weights.argmax(dim=1)
        designs = res.samples[torch.arange(self.q), best].detach()
        pred = model.posterior_mean_std(designs.double())[0][:, 0].numpy() if fitted else None
        return Proposal(designs, pred, families=self.q)  # one design per group


class PriorScreened(_Surrogated):
    def ask(self, r: int) -> Proposal:
        particles = self._prior_particles(r, self.s.num_particles)
        if len(self.Y) < 2:
            return Proposal(particles[self._space_filling(r, particles, [])])
        return self._screened(r, self._fit(), particles)


class RandomPrior(_Base):
    def ask(self, r: int) -> Proposal:
        return Proposal(self._prior_particles(r, self.q))


class BoTorchRaw(_Base):
    """qLogNEI over the raw box (normalized to the unit cube), q points optimized jointly."""

    def ask(self, r: int) -> Proposal:
        from botorch.acquisition import qLogNoisyExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize
        from botorch.optim import optimize_acqf
        from botorch.utils.sampling import draw_sobol_samples
        from gpytorch.mlls import ExactMarginalLogLikelihood

        lo, hi = self.problem.bounds()
        D = lo.numel()
        unit = torch.stack([torch.zeros(D), torch.ones(D)]).double()
        if len(self.Y) < 2:
            Z = draw_sobol_samples(unit, n=self.q, q=1, seed=self.seed * 1000 + r)[:, 0]
            return Proposal(self._to_designs(lo + (hi - lo) * Z))
        span = (hi - lo).clamp_min(1e-9)
        Zt = ((torch.stack(self.X).reshape(len(self.X), -1) - lo) / span).double()
        Yt = torch.tensor(self.Y, dtype=torch.float64)[:, None]
        gp = SingleTaskGP(Zt, Yt, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        acq = qLogNoisyExpectedImprovement(gp, X_baseline=Zt, prune_baseline=True)
        torch.manual_seed(self.seed * 1000 + r)  # optimize_acqf's initial conditions use the global RNG
        Z, _ = optimize_acqf(acq, bounds=unit, q=self.q, num_restarts=self.s.raw_restarts,
                             raw_samples=self.s.raw_samples, options={"maxiter": 100})
        Z = Z.detach()
        with torch.no_grad():
            pred = gp.posterior(Z).mean[:, 0].numpy()
        return Proposal(self._to_designs(lo + (hi - lo) * Z), pred)

    def _to_designs(self, flat: Tensor) -> Tensor:
        return flat.reshape(len(flat), *self.problem.design_shape).to(torch.float32)


class AxRaw(_Base):
    """Ax ``Client`` (default generation strategy: Sobol, then its BoTorch model) in the raw box."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.client, self.names = ax_client(self.problem, self.seed, "y")
        self.pending: list[int] = []

    def ask(self, r: int) -> Proposal:
        _quiet_ax()
        rows: list[list[float]] = []
        self.pending = []
        while len(rows) < self.q:
            trials = self.client.get_next_trials(max_trials=self.q - len(rows))
            if not trials:
                raise RuntimeError(f"Ax generated no trial in round {r}; the batch cannot be filled")
            for idx, params in trials.items():
                self.pending.append(idx)
                rows.append([float(params[n]) for n in self.names])
            if len(rows) < self.q:  # the strategy waits for data (end of its Sobol stage)
                self._complete_pending_now(rows)
        flat = torch.tensor(rows, dtype=torch.float64)
        return Proposal(flat.reshape(len(flat), *self.problem.design_shape).to(torch.float32))

    def _complete_pending_now(self, rows: list[list[float]]) -> None:
        # Ax only hands out the rest of a batch after seeing results: report the trials so far
        # (their values are the same the round reports; the budget is unchanged).
        start = len(rows) - len(self.pending)
        vals = self.problem.value(torch.tensor(rows[start:], dtype=torch.float64).reshape(
            -1, *self.problem.design_shape))
        for idx, v in zip(self.pending, vals.tolist()):
            self.client.complete_trial(trial_index=idx, raw_data={"y": float(v)})
        self.pending = []

    def tell(self, designs: Tensor, values: Tensor) -> None:
        super().tell(designs, values)
        for idx, v in zip(self.pending, values[len(values) - len(self.pending):].tolist()):
            self.client.complete_trial(trial_index=idx, raw_data={"y": float(v)})
        self.pending = []


def ax_client(problem: Problem, seed: int, objective: str):
    """An Ax ``Client`` over the problem's raw box (one float parameter ``x{i}`` per design
    coordinate) optimizing ``objective`` (Ax's objective string: ``"y"``, ``"f1, f2"``), and the
    parameter names."""
    from ax.api.client import Client
    from ax.api.configs import RangeParameterConfig

    _quiet_ax()
    lo, hi = problem.bounds()
    names = [f"x{i}" for i in range(lo.numel())]
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[
        RangeParameterConfig(name=n, parameter_type="float", bounds=(float(a), float(max(b, a + 1e-6))))
        for n, a, b in zip(names, lo.tolist(), hi.tolist(), strict=True)])
    client.configure_optimization(objective=objective)
    return client, names


def _quiet_ax() -> None:
    # Ax sets INFO on each of its loggers (created lazily): silence them all, keep errors
    for name in list(logging.root.manager.loggerDict):
        if name == "ax" or name.startswith("ax."):
            logging.getLogger(name).setLevel(logging.ERROR)


def make_method(name: str, problem: Problem, q: int, seed: int, settings: MethodSettings) -> _Base:
    """A fresh ask/tell object for ``name`` (one of ``METHODS``)."""
    classes = {"tiltloop": TiltLoop, "tiltloop-new": TiltLoopNew, "tiltloop-auto": TiltLoopAuto,
               "tiltloop-predictive": TiltLoopPredictive, "tiltloop-diverse": TiltLoopDiverse,
               "das-groups": DASGroups, "prior-screened": PriorScreened,
               "ax": AxRaw, "botorch-raw": BoTorchRaw, "random": RandomPrior}
    if name not in classes:
        raise ValueError(f"--methods: unknown method {name!r}; choose from {', '.join(METHODS + ABLATIONS)}")
    if name == "ax" and not ax_available():
        raise ImportError(AX_MISSING)
    return classes[name](problem, q, seed, settings)
