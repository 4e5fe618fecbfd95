r"""The multi-fidelity surrogate: one multi-task GP over (features, oracle) for cheap evaluators.

`f(z, t)` with the ICM kernel `k((z, t), (z', t')) = k_x(z, z') · B[t, t']` (BoTorch's
``MultiTaskGP``: a Matérn-5/2 ARD `k_x` with a dimension-scaled prior, a learned task
covariance `B`, a constant mean and a noise level per task). Task 0 is the campaign's
``[oracle]`` (the expensive one), task `j ≥ 1` the `j`-th ``[[oracles]]`` entry. Each task's
results are standardized on their own (a cheap oracle's offset and scale are not the expensive
one's: `B` only has to learn their correlation), features are scaled to `[0, 1]` by the bounds
of the training and candidate features together.

Every acquisition is on the expensive task's posterior `f(·, 0) | all results`:

* :meth:`MultiTaskSurrogate.pick_ucb`: sequential greedy qUCB (`μ + β σ` for one point; a point
  close to an earlier pick adds little: the batch maximum is sampled jointly) — what the cheap
  oracles are sent each round;
* :meth:`MultiTaskSurrogate.pick_nei`: sequential greedy qLogNEI over the expensive
  observations with the in-flight expensive designs as pending points — what ``[oracle]`` gets.

    >>> mt = MultiTaskSurrogate.fit([Z_main, Z_sim], [y_main, y_sim], bounds=bounds, seed=0)
    >>> mean, std = mt.predict(Z_candidates)             # expensive task, original units
    >>> picks = mt.pick_nei(Z_candidates, q=4, pending=Z_in_flight)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP
from botorch.optim import optimize_acqf_discrete
from botorch.optim.utils import sample_all_priors
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from optimizer.errors import SurrogateError

#: results each of the expensive task and of at least one cheap task needs before the fit
MIN_PER_TASK = 2
#: quasi-MC samples of the batch acquisitions
MC_SAMPLES = 256
#: L-BFGS starts of a cold fit: the default initialization, then hyperparameters drawn from
#: their priors (the best marginal likelihood is kept)
COLD_STARTS = 3


@dataclass(frozen=True)
class TaskScale:
    """How one task's results were standardized: `y_std = (y − mean) / std`."""

    mean: float
    std: float


class MultiTaskSurrogate:
    """A fitted multi-task GP; build with :meth:`fit`.

    Attributes:
        model: the BoTorch ``MultiTaskGP`` (outputs the expensive task only).
        scales: one :class:`TaskScale` per task (task 0 = expensive).
        counts: results per task it was fitted on.
        task_correlation: the learned correlation of each task with task 0.
    """

    def __init__(self, model: MultiTaskGP, scales: list[TaskScale], counts: list[int],
                 lower: Tensor, span: Tensor, seed: int) -> None:
        self.model = model
        self.scales = scales
        self.counts = counts
        self._lower, self._span = lower, span
        self._seed = seed
        self.task_correlation = _correlations(model, len(scales))

    @classmethod
    def fit(cls, Z: Sequence[Tensor], Y: Sequence[Tensor], *, bounds: Tensor, seed: int = 0,
            previous: dict[str, Tensor] | None = None, refit: bool = True, maxiter: int = 150,
            ) -> MultiTaskSurrogate:
        """Fit on per-task features ``Z[t]`` (`n_t x k`) and primary-objective results ``Y[t]``
        (`n_t`, maximized); ``bounds`` (`2 x k`) scale the features to the unit cube.

        ``previous``: the hyperparameters of an earlier fit (:attr:`hyperparameters`), the
        starting point of L-BFGS (at most ``maxiter`` iterations); with ``refit=False`` they are
        kept as they are and the GP is only conditioned on the new data (no optimization: what a
        round does after the cheap answers came in, minutes of CPU saved on a loaded machine).

        Raises:
            SurrogateError: task 0 or every other task has fewer than ``MIN_PER_TASK`` results,
                or the shapes disagree.
        """
        if len(Z) != len(Y) or len(Z) < 2:
            raise SurrogateError(f"a multi-task fit needs features and results of >= 2 tasks, "
                                 f"got {len(Z)} feature sets and {len(Y)} result sets")
        counts = [int(len(y)) for y in Y]
        if counts[0] < MIN_PER_TASK or max(counts[1:]) < MIN_PER_TASK:
            raise SurrogateError(f"a multi-task fit needs >= {MIN_PER_TASK} results of the expensive "
                                 f"oracle and of a cheap one; got {counts}")
        lower = bounds[0].double()
        span = (bounds[1].double() - lower).clamp_min(1e-9)
        xs, ys, scales = [], [], []
        for t, (z, y) in enumerate(zip(Z, Y, strict=True)):
            y = y.double().reshape(-1)
            if len(y) == 0:
                scales.append(TaskScale(0.0, 1.0))
                continue
            mean = float(y.mean())
            std = float(y.std()) if len(y) > 1 else 1.0
            std = std if math.isfinite(std) and std > 1e-9 else 1.0
            scales.append(TaskScale(mean, std))
            zt = (z.double().reshape(len(y), -1) - lower) / span
            xs.append(torch.cat([zt, torch.full((len(y), 1), float(t), dtype=torch.double)], -1))
            ys.append(((y - mean) / std).unsqueeze(-1))
        train_X, train_Y = torch.cat(xs), torch.cat(ys)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = MultiTaskGP(train_X, train_Y, task_feature=-1, output_tasks=[0],
                                all_tasks=list(range(len(Z))), outcome_transform=None)
            warm = previous is not None and _load(model, previous)
            if refit or not warm:
                # a cold fit from the default initialization can stop in a poor optimum (short
                # lengthscales, the tasks' correlation unlearned): restart from prior draws and
                # keep the highest marginal likelihood; a warm start begins near the last optimum
                _fit_best(model, maxiter=maxiter, starts=1 if warm else COLD_STARTS)
        model.eval()
        return cls(model, scales, counts, lower, span, seed)

    @property
    def hyperparameters(self) -> dict[str, Tensor]:
        """The fitted hyperparameters (kernel, task covariance, means, noise): a warm start."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def _scale(self, Z: Tensor) -> Tensor:
        return (Z.double().reshape(len(Z), -1) - self._lower) / self._span

    def predict(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """The expensive task's posterior mean and std at features ``Z``, in its own units."""
        with torch.no_grad():
            post = self.model.posterior(self._scale(Z))
            s = self.scales[0]
            mean = post.mean.reshape(-1) * s.std + s.mean
            std = post.variance.clamp_min(0).sqrt().reshape(-1) * s.std
        return mean, std

    def pick_ucb(self, Z: Tensor, k: int, *, beta: float, pending: Tensor | None = None) -> list[int]:
        """``k`` rows of ``Z`` by sequential greedy qUCB (`μ + β σ` for one point) of the
        expensive task, ``pending`` (already sent, no answer yet) conditioned on."""
        acq = qUpperConfidenceBound(self.model, beta=beta ** 2, sampler=self._sampler(),
                                    X_pending=None if pending is None or not len(pending)
                                    else self._scale(pending))
        return self._greedy(acq, Z, k)

    def pick_nei(self, Z: Tensor, q: int, *, observed: Tensor, pending: Tensor | None = None
                 ) -> list[int]:
        """``q`` rows of ``Z`` by sequential greedy qLogNEI of the expensive task over its
        ``observed`` designs' features (the incumbent), ``pending`` conditioned on."""
        acq = qLogNoisyExpectedImprovement(
            self.model, X_baseline=self._scale(observed), sampler=self._sampler(),
            X_pending=None if pending is None or not len(pending) else self._scale(pending),
            prune_baseline=True)
        return self._greedy(acq, Z, q)

    def _sampler(self) -> SobolQMCNormalSampler:
        return SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=self._seed)

    def _greedy(self, acq: object, Z: Tensor, k: int) -> list[int]:
        k = min(k, len(Z))
        if k <= 0:
            return []
        choices = self._scale(Z)
        with torch.no_grad():
            picked, _ = optimize_acqf_discrete(acq, q=k, choices=choices, unique=True,  # type: ignore[arg-type]
                                               max_batch_size=512)
        return _match(picked, choices)


def _fit_best(model: MultiTaskGP, *, maxiter: int, starts: int) -> None:
    """Fit ``model``'s hyperparameters from ``starts`` initial points (the current values, then
    draws from the priors, under the caller's torch seed); keep the highest marginal likelihood.

    Raises:
        SurrogateError: every start failed.
    """
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    best: tuple[float, dict[str, Tensor]] | None = None
    errors: list[str] = []
    for start in range(starts):
        if start:
            sample_all_priors(model)
        try:
            fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
            model.train()
            inputs: tuple[Tensor, ...] = model.train_inputs  # type: ignore[assignment]
            with torch.no_grad():
                value = float(mll(model(*inputs), model.train_targets, *inputs))
        except Exception as exc:  # noqa: BLE001 - a failed start is reported, not raised deep
            errors.append(str(exc))
            continue
        if math.isfinite(value) and (best is None or value > best[0]):
            best = (value, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best is None:
        raise SurrogateError(f"the multi-task GP fit failed: {'; '.join(errors) or 'no finite fit'}")
    model.load_state_dict(best[1])


def _load(model: MultiTaskGP, previous: dict[str, Tensor]) -> bool:
    """Copy ``previous`` hyperparameters into ``model`` when every one matches in name and
    shape (a different feature dimension or task count: a cold start)."""
    own = dict(model.named_parameters())
    if set(own) != set(previous) or any(own[k].shape != v.shape for k, v in previous.items()):
        return False
    with torch.no_grad():
        for k, v in previous.items():
            own[k].copy_(v)
    return True


def _match(picked: Tensor, choices: Tensor) -> list[int]:
    """Row indices of ``choices`` equal to each picked row (first unused match)."""
    out: list[int] = []
    for row in picked:
        hits = torch.nonzero((choices == row).all(-1)).reshape(-1).tolist()
        free = [h for h in hits if h not in out]
        if free:
            out.append(int(free[0]))
    return out


def _correlations(model: MultiTaskGP, tasks: int) -> list[float]:
    """`B[0, t] / sqrt(B[0, 0] B[t, t])` for each task `t` (1.0 for task 0)."""
    try:
        with torch.no_grad():
            B = model.covar_module.kernels[1].covar_matrix
            B = B.to_dense() if hasattr(B, "to_dense") else B
        return [float(B[0, t] / (B[0, 0] * B[t, t]).sqrt()) for t in range(tasks)]
    except Exception:  # noqa: BLE001 - a diagnostic only
        return [float("nan")] * tasks
