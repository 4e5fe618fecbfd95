"""Callable oracle: a Python function (or a ``"module:function"`` import path) run in a thread
pool, so ``submit`` returns at once even when one evaluation takes minutes.

Concurrency is bounded by ``max_workers``. A running Python function cannot be killed: use
:class:`oracles.command.CommandOracle` when evaluations may hang.

>>> oracle = CallableOracle("math:fsum", objectives=("y",), max_workers=2)
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from oracles.errors import OracleConfigError
from oracles.futures import PooledOracle
from oracles.protocol import QueryRequest, QueryResult
from oracles.sync import DesignFunction, call_safely, check_objectives


def import_callable(path: str) -> Callable:
    """Import ``"package.module:function"`` (dots after the colon walk attributes).

    Raises:
        OracleConfigError: naming the path and what could not be found.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise OracleConfigError(f"callable path {path!r} must look like 'package.module:function'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleConfigError(f"callable path {path!r}: cannot import module {module_name!r} "
                                f"({exc}); is it installed / on PYTHONPATH?") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise OracleConfigError(f"callable path {path!r}: {module_name!r} has no attribute "
                                    f"{attr!r}") from None
    if not callable(obj):
        raise OracleConfigError(f"callable path {path!r} names a {type(obj).__name__}, "
                                f"not a function")
    return obj


class CallableOracle(PooledOracle):
    """Runs a Python function per design in a bounded thread pool.

    Args:
        target: the function, or its ``"module:function"`` import path.
        objectives: objective names (maximized).
        max_workers: evaluations running at once.
        name: shown in logs.
    """

    def __init__(self, target: DesignFunction | str, objectives: Sequence[str] = ("y",), *,
                 max_workers: int = 4, name: str | None = None) -> None:
        self.fn = import_callable(target) if isinstance(target, str) else target
        if not callable(self.fn):
            raise OracleConfigError(f"target must be callable or 'module:function', got "
                                    f"{type(target).__name__}")
        if max_workers < 1:
            raise OracleConfigError(f"max_workers must be >= 1, got {max_workers}")
        self.objectives = check_objectives(objectives)
        self.name: str = name or (target if isinstance(target, str) else
                                  str(getattr(self.fn, "__name__", "callable")))
        super().__init__(max_workers=max_workers, thread_name_prefix="oracle")

    def __repr__(self) -> str:
        return f"CallableOracle(name={self.name!r}, objectives={self.objectives})"

    def _evaluate(self, request: QueryRequest) -> QueryResult:
        return call_safely(self.fn, request, self.objectives)

    def close(self) -> None:
        """Stop the pool; queued evaluations are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)
