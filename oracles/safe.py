"""The shim between the campaign loop and any oracle: no oracle exception ever unwinds the loop.

``SafeOracle(inner)`` keeps the protocol and adds these guarantees:

1. ``submit`` always returns one handle per request, in order, with the request's key. If the
   inner oracle raises, every request gets a handle carrying the reason (retryable for
   :class:`OracleTransientError`: the next poll says ``unknown`` so the loop resubmits with the
   same key; otherwise the next poll says ``failed``).
2. ``poll`` always returns one validated result per handle. If the inner oracle raises a transient
   error the queries stay ``pending`` with the reason in ``error`` (a flaky status endpoint must not
   abandon a running lab job); any other exception fails them with its reason.
3. ``cancel`` and ``close`` log and swallow exceptions.
4. ``design_shape`` and ``describe(timeout_s)`` pass through to the inner oracle (a preflight
   call, before the loop starts: ``describe`` RAISES when an HTTP lab cannot be reached).

>>> oracle = SafeOracle(SyncOracle(lambda x: float(x.sum()), objectives=("y",)))
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from oracles.errors import OracleTransientError
from oracles.protocol import JobHandle, Oracle, QueryRequest, QueryResult
from oracles.shape import LabDescription, describe_oracle
from oracles.validation import (failed, json_safe, submit_failure_handle,
                                submit_failure_result, validate_result)

logger = logging.getLogger(__name__)


def _keys(items: Sequence[QueryRequest] | Sequence[JobHandle]) -> str:
    """The keys of a batch for a log line (a key names its campaign: ``CAMPAIGN:ROUND:CAND``)."""
    keys = [str(i.key) for i in items]
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def describe(exc: BaseException) -> str:
    """``TypeName: message`` cut to 500 characters (oracle messages never carry secrets)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


class SafeOracle:
    """Wraps an oracle so that every call returns well-formed handles and results.

    Args:
        inner: any object following :class:`oracles.protocol.Oracle`.
    """

    def __init__(self, inner: Oracle) -> None:
        self.inner: Oracle = inner.inner if isinstance(inner, SafeOracle) else inner
        self.name: str = str(getattr(self.inner, "name", type(self.inner).__name__))
        self.objectives: tuple[str, ...] = tuple(self.inner.objectives)

    def __repr__(self) -> str:
        return f"SafeOracle({self.inner!r})"

    @property
    def design_shape(self) -> tuple[int, ...] | None:
        """The inner oracle's ``design_shape`` when it has one (simulated oracles), else None."""
        shape = getattr(self.inner, "design_shape", None)
        return None if shape is None else tuple(shape)

    def describe(self, timeout_s: float = 5.0) -> LabDescription | None:
        """What the inner oracle says about itself (see :func:`oracles.shape.describe_oracle`);
        raises, unlike the protocol calls: it is a preflight check."""
        return describe_oracle(self.inner, timeout_s=timeout_s)

    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Submit; see the class docstring for what happens on errors."""
        requests = list(requests)
        if not requests:
            return []
        try:
            handles = list(self.inner.submit(requests))
        except Exception as exc:  # the shim's whole purpose: nothing escapes
            logger.warning("oracle %s: submit of %d request(s) failed (queries %s): %s",
                           self.name, len(requests), _keys(requests), describe(exc))
            retryable = isinstance(exc, OracleTransientError)
            return [submit_failure_handle(r.key, describe(exc), retryable=retryable)
                    for r in requests]
        if len(handles) != len(requests):
            reason = f"oracle returned {len(handles)} handle(s) for {len(requests)} request(s)"
            return [submit_failure_handle(r.key, reason, retryable=True) for r in requests]
        out = []
        for request, handle in zip(requests, handles):
            if not isinstance(handle, JobHandle) or handle.key != request.key:
                got = handle.key if isinstance(handle, JobHandle) else type(handle).__name__
                out.append(submit_failure_handle(
                    request.key, f"oracle returned a handle for {got!r}", retryable=True))
            elif json_safe(handle.metadata) is not handle.metadata:
                # the handle is the only way back to the job after a crash: it must be storable
                out.append(submit_failure_handle(
                    request.key, f"oracle returned handle metadata that is not JSON "
                                 f"({json_safe(handle.metadata)['dropped_metadata']})",
                    retryable=False))
            else:
                out.append(handle)
        return out

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """Poll; see the class docstring for what happens on errors."""
        handles = list(handles)
        results: list[QueryResult | None] = [submit_failure_result(h) for h in handles]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            inner_handles = [handles[i] for i in todo]
            try:
                got = list(self.inner.poll(inner_handles))
                if len(got) != len(inner_handles):
                    raise RuntimeError(f"oracle returned {len(got)} result(s) for "
                                       f"{len(inner_handles)} handle(s)")
            except OracleTransientError as exc:
                reason = describe(exc)
                logger.warning("oracle %s: poll failed, jobs stay pending (queries %s): %s",
                               self.name, _keys(inner_handles), reason)
                got = [QueryResult(key=h.key, status="pending", error=reason)
                       for h in inner_handles]
            except Exception as exc:
                reason = describe(exc)
                logger.warning("oracle %s: poll failed (queries %s): %s", self.name,
                               _keys(inner_handles), reason)
                got = [failed(h.key, f"poll failed: {reason}") for h in inner_handles]
            for i, result in zip(todo, got):
                results[i] = validate_result(result, self.objectives, handles[i].key)
        return [r for r in results if r is not None]

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Cancel what can be cancelled; errors are logged, never raised."""
        live = [h for h in handles if submit_failure_result(h) is None]
        if not live:
            return
        try:
            self.inner.cancel(live)
        except Exception as exc:
            logger.warning("oracle %s: cancel failed: %s", self.name, describe(exc))

    def close(self) -> None:
        """Close the inner oracle; errors are logged, never raised."""
        try:
            self.inner.close()
        except Exception as exc:
            logger.warning("oracle %s: close failed: %s", self.name, describe(exc))
