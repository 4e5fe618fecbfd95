"""The rules of a multi-objective (Pareto) campaign config, kept apart from ``config.py``.

- ``acquisition = "qlognehvi"`` and ``scalarization = "parego"`` need at least two objectives;
- ``[[objectives]] reference`` (the hypervolume's reference point) needs at least two objectives;
- the surrogate's ``reference_point`` is derived from the objectives (signed: the loop maximizes).
"""
from __future__ import annotations

from typing import Any


def check_pareto(config: Any) -> None:
    """Refuse a Pareto setting that the campaign's objectives cannot support (``ValueError``
    naming the field and the fix)."""
    objs = config.objectives
    sur = config.surrogate
    if "reference_point" in sur.model_fields_set:
        raise ValueError("[surrogate.reference_point] is set by the loop from each objective's "
                         "`reference`; remove it and set `reference = <value>` under [[objectives]]")
    if sur.scalarization == "parego" and sur.weights is not None:
        raise ValueError("[surrogate.weights] ParEGO draws its own weights per SMC chunk "
                         "(scalarization = \"parego\"); remove `weights`")
    if len(objs) >= 2:
        return
    if sur.scalarization == "parego":
        raise ValueError(
            f"[surrogate.scalarization] \"parego\" needs at least two [[objectives]], the campaign "
            f"has one ({objs[0].name!r}); remove it")
    if sur.acquisition == "qlognehvi":
        raise ValueError(
            f"[surrogate.acquisition] \"qlognehvi\" (hypervolume improvement) needs at least two "
            f"[[objectives]], the campaign has one ({objs[0].name!r}); use \"qlognei\" or add an "
            "objective")
    for i, o in enumerate(objs):
        if o.reference is not None:
            raise ValueError(
                f"[objectives.{i}.reference] a hypervolume reference point needs at least two "
                "objectives; remove it")


def is_pareto(config: Any) -> bool:
    """Whether the campaign is a Pareto campaign (ParEGO tilt or hypervolume screening)."""
    sur = config.surrogate
    return sur.scalarization == "parego" or sur.acquisition == "qlognehvi"


def signed_reference(config: Any) -> tuple[float | None, ...] | None:
    """Each objective's ``reference`` in the loop's maximized orientation (minimized objectives
    are sign-flipped), None where unset; None when no objective sets one."""
    refs = [o.reference for o in config.objectives]
    if all(r is None for r in refs):
        return None
    return tuple(None if r is None else (r if o.direction == "maximize" else -r)
                 for r, o in zip(refs, config.objectives, strict=True))
