"""What an oracle says about itself, and the design-shape check a campaign runs before it starts.

A campaign's prior makes designs of one shape (``(16,)`` for the bundled ``manifold`` prior,
``(1, 8, 8)`` for ``digits``). An oracle that takes another shape would fail every query, one
HTTP 422 at a time, after rows are already written. So, before anything is written:

1. ``describe_oracle(oracle)`` asks the oracle what it takes: a simulated oracle knows its
   ``design_shape``; an :class:`oracles.http.HttpOracle` reads the lab's ``GET /health``
   (optional ``design_shape`` and ``objectives`` fields, see ``oracles/openapi.json``);
   ``SafeOracle`` is looked through. ``None`` = the oracle says nothing (nothing to check).
2. ``check_design_shape(expected, prior_shape, where=...)`` raises
   :class:`oracles.errors.OracleConfigError` naming both shapes and the remedy.

>>> check_design_shape((16,), (16,), where="the oracle at http://127.0.0.1:8765")
>>> check_design_shape((2,), (16,), where="the lab", prior="manifold")  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
oracles.errors.OracleConfigError: the lab takes designs of shape (2,) but the prior `manifold` ...
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oracles.errors import OracleConfigError, OracleReplyError


@dataclass(frozen=True)
class LabDescription:
    """What an oracle reports about itself; a field is None when it says nothing about it.

    Attributes:
        design_shape: the shape of one design it takes, e.g. ``(16,)`` or ``(1, 8, 8)``.
        objectives: the objective names it reports, e.g. ``("value",)``.
    """

    design_shape: tuple[int, ...] | None = None
    objectives: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The optional ``/health`` fields (``design_shape``, ``objectives``) that are known."""
        out: dict[str, Any] = {}
        if self.design_shape is not None:
            out["design_shape"] = list(self.design_shape)
        if self.objectives is not None:
            out["objectives"] = list(self.objectives)
        return out


def description_from_json(body: Any, *, where: str) -> LabDescription | None:
    """Parse a ``GET /health`` body; None when it carries neither optional field.

    Raises:
        OracleReplyError: a field is present but malformed (names the field and ``where``).
    """
    if not isinstance(body, dict):
        raise OracleReplyError(f"{where}: GET /health must answer a JSON object, got "
                               f"{type(body).__name__}")
    shape = body.get("design_shape")
    objectives = body.get("objectives")
    if shape is not None and not (
            isinstance(shape, list) and shape
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
        raise OracleReplyError(f"{where}: GET /health field `design_shape` must be a non-empty "
                               f"list of positive integers, got {shape!r:.100}")
    if objectives is not None and not (
            isinstance(objectives, list) and objectives
            and all(isinstance(o, str) and o for o in objectives)):
        raise OracleReplyError(f"{where}: GET /health field `objectives` must be a non-empty "
                               f"list of names, got {objectives!r:.100}")
    if shape is None and objectives is None:
        return None
    return LabDescription(None if shape is None else tuple(shape),
                          None if objectives is None else tuple(objectives))


def describe_oracle(oracle: Any, *, timeout_s: float = 5.0) -> LabDescription | None:
    """What ``oracle`` says about itself (``SafeOracle`` looked through), or None.

    Uses the oracle's ``describe(timeout_s=...)`` when it has one (HTTP: one ``GET /health``),
    else its ``design_shape`` attribute.

    Raises:
        OracleTransientError: an HTTP lab cannot be reached.
        OracleReplyError: its ``/health`` reply is malformed.
    """
    inner = getattr(oracle, "inner", oracle)
    describe = getattr(inner, "describe", None)
    if callable(describe):
        return describe(timeout_s=timeout_s)
    shape = getattr(inner, "design_shape", None)
    return None if shape is None else LabDescription(tuple(shape), tuple(inner.objectives))


def labsim_command(prior_shape: Sequence[int]) -> str:
    """The lab-simulator command whose designs have ``prior_shape`` (a hint for messages)."""
    shape = tuple(prior_shape)
    if shape == (16,):
        return "python -m oracles.labsim --function manifold"
    if shape == (1, 8, 8):
        return "python -m oracles.labsim --function digits --pixel-range signed"
    if len(shape) == 1:
        return f"python -m oracles.labsim --function ackley --dim {shape[0]}"
    return "python -m oracles.labsim --help"


def format_shape(shape: Sequence[int]) -> str:
    """``(16,)``, ``(1, 8, 8)``: a shape as Python prints a tuple."""
    return str(tuple(int(n) for n in shape))


def check_design_shape(expected: tuple[int, ...] | None, prior_shape: tuple[int, ...], *,
                       where: str, prior: str | None = None) -> None:
    """Refuse a prior whose designs the oracle cannot take; ``expected=None`` passes (unknown).

    Args:
        expected: the shape the oracle takes (``LabDescription.design_shape``), or None.
        prior_shape: the shape of one design the prior makes.
        where: the oracle, as the message should name it, e.g. ``"the oracle at http://..."``.
        prior: the prior's name, shown in backticks (e.g. ``"manifold"``).

    Raises:
        OracleConfigError: the shapes differ; the message names both and the remedy.
    """
    if expected is None or tuple(expected) == tuple(prior_shape):
        return
    named = f"the prior `{prior}`" if prior else "the prior"
    raise OracleConfigError(
        f"{where} takes designs of shape {format_shape(expected)} but {named} makes designs of "
        f"shape {format_shape(prior_shape)}; choose the oracle function that matches the prior "
        f"(e.g. `{labsim_command(prior_shape)}`) or another prior")
