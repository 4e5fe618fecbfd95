"""What the multi-task GPs of a campaign with cheap oracles model, and how a pick is labelled.

``optimizer.campaign.fidelity`` fits one multi-task GP per output (``optimizer.surrogate.
multitask_outputs``): the primary objective — or every objective of a Pareto campaign
(``scalarization = "parego"`` or ``acquisition = "qlognehvi"``) — then each ``[[constraints]]``
output's slack. Every cheap oracle has to report those outputs (``config_fidelity.
check_oracles`` at config time, ``fidelity.check_cheap_oracles`` against the lab).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from optimizer.campaign.config_pareto import is_pareto

__all__ = ["ModelledOutputs", "modelled_outputs", "task_results"]


@dataclass(frozen=True)
class ModelledOutputs:
    """The outputs modelled across fidelities: ``objectives`` objective names, then the
    constraint outputs (``names`` holds both, in that order)."""

    objectives: int
    names: tuple[str, ...]

    @property
    def constraints(self) -> int:
        return len(self.names) - self.objectives

    def columns(self, config: Any) -> list[int]:
        """Their columns in ``rounds.training_data``'s `Y` (objectives, then constraints)."""
        n_obj = len(config.objectives)
        return [*range(self.objectives), *range(n_obj, n_obj + self.constraints)]


def modelled_outputs(config: Any) -> ModelledOutputs:
    """The outputs of ``config`` (a ``CampaignConfig``) the multi-task GPs model."""
    objectives = [o.name for o in config.objectives]
    m = len(objectives) if is_pareto(config) else 1
    return ModelledOutputs(m, (*objectives[:m], *(c.name for c in config.constraints)))


def task_results(history: Any, config: Any, outputs: ModelledOutputs) -> tuple[np.ndarray, np.ndarray]:
    """Designs and `n x (m + k)` values of a cheap oracle's results: the objectives signed
    (maximized), the constraints as slacks (feasible ⇔ `≤ 0`), as ``rounds.training_data``
    builds the expensive ones; a result without every modelled output is left out."""
    objs = {o.name: (1.0 if o.direction == "maximize" else -1.0) for o in config.objectives}
    cons = {c.name: c for c in config.constraints}
    done = [q for q in history.completed
            if q.values and q.design is not None and all(n in q.values for n in outputs.names)]
    if not done:
        return np.zeros((0,)), np.zeros((0, len(outputs.names)))
    X = np.stack([np.asarray(q.design, dtype=np.float64) for q in done])
    Y = np.array([[objs[n] * float(q.values[n]) if n in objs else float(cons[n].slack(float(q.values[n])))
                   for n in outputs.names] for q in done], dtype=np.float64)
    return X, Y


def with_predictions(candidates: list[Any], mt: Any) -> list[Any]:
    """The candidates with ``surrogate_mean`` / ``surrogate_std`` from the multi-task GP's
    ``[oracle]`` task (primary objective, maximized): the prediction the expensive pick was made
    with, which ``alpha = "auto"``'s over-optimization gap compares with the results."""
    if not candidates:
        return candidates
    Z = torch.as_tensor(np.stack([np.asarray(c.features, dtype=np.float64).reshape(-1)
                                  for c in candidates]))
    mean, std = mt.predict(Z)
    return [replace(c, surrogate_mean=float(mu), surrogate_std=float(sd))
            for c, mu, sd in zip(candidates, mean.tolist(), std.tolist(), strict=True)]


def expensive_how(outputs: ModelledOutputs) -> str:
    """The round summary's name of the expensive pick."""
    if outputs.objectives > 1:
        return "multi-task qLogNEHVI" + (" (constrained)" if outputs.constraints else "")
    return "multi-task constrained qLogNEI" if outputs.constraints else "multi-task qLogNEI"


def cheap_how(outputs: ModelledOutputs) -> str:
    """The cheap round summary's name of the cheap pick."""
    base = "multi-task ParEGO UCB" if outputs.objectives > 1 else "multi-task UCB"
    return base + (" x PoF" if outputs.constraints else "")
