"""Result validation: anything an oracle says becomes a well-formed :class:`QueryResult`.

A missing objective, a NaN or inf, a wrong type, an unexpected key or a malformed reply turns the
query into ``status="failed"`` with a reason naming the objective and the value, never into an
exception that would stop a campaign. Submit failures travel in the handle's metadata
(``submit_error``) so the next poll reports them.
"""
from __future__ import annotations

import dataclasses

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from oracles.errors import OracleReplyError
from oracles.protocol import STATUSES, JobHandle, QueryResult

SUBMIT_ERROR = "submit_error"
#: longest error text kept: a lab that puts a 10 MB page in ``error`` must not fill the database
MAX_ERROR_CHARS = 2000
SUBMIT_RETRYABLE = "submit_retryable"


def _number(value: Any, where: str) -> float:
    # bool is an int subclass; True as an objective value is a bug in the oracle, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OracleReplyError(f"{where} must be a number, got {type(value).__name__} {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer literal beyond float range (json gives a Python int)
        raise OracleReplyError(f"{where} is an integer too large for a float ({str(value)[:40]}...); "
                               f"an oracle result must be finite") from None
    if not math.isfinite(number):
        raise OracleReplyError(f"{where} is {number!r}; an oracle result must be finite")
    return number


def validate_values(raw: Any, objectives: Sequence[str], *, what: str = "values") -> dict[str, float]:
    """Check a mapping objective -> finite float holds exactly ``objectives``.

    Raises:
        OracleReplyError: naming the objective and the bad value.
    """
    if not isinstance(raw, Mapping):
        raise OracleReplyError(f"{what} must be an object mapping objective names to numbers, "
                               f"got {type(raw).__name__} {raw!r:.80}")
    missing = [name for name in objectives if name not in raw]
    if missing:
        raise OracleReplyError(f"{what} lacks objective(s) {missing}; expected {list(objectives)}, "
                               f"got {sorted(map(str, raw))}")
    extra = [str(name) for name in raw if name not in objectives]
    if extra:
        raise OracleReplyError(f"{what} has unexpected objective(s) {extra}; expected "
                               f"{list(objectives)}")
    return {name: _number(raw[name], f"{what}[{name!r}]") for name in objectives}


def validate_noise(raw: Any, objectives: Sequence[str]) -> dict[str, float] | None:
    """Noise variances: None, or a mapping over a subset of ``objectives`` to finite floats >= 0."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise OracleReplyError(f"noise must be an object or null, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if name not in objectives:
            raise OracleReplyError(f"noise names unknown objective {name!r}; expected one of "
                                   f"{list(objectives)}")
        out[name] = _number(value, f"noise[{name!r}]")
        if out[name] < 0:
            raise OracleReplyError(f"noise[{name!r}] is {out[name]}; a variance must be >= 0")
    return out


def json_safe(metadata: Any) -> dict[str, Any]:
    """``metadata`` if it is a JSON object that serializes, else a note saying why it was dropped
    (the loop stores metadata as JSON; a set or an array in it must not crash storage)."""
    if not isinstance(metadata, dict):
        return {"dropped_metadata": f"not a JSON object: {type(metadata).__name__}"}
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return {"dropped_metadata": f"not JSON-serializable: {exc}"[:300]}
    return metadata


def clip_error(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_CHARS`, saying how much was cut."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} more characters cut)"


def failed(key: str, reason: str, metadata: dict[str, Any] | None = None) -> QueryResult:
    """A failed result with its reason (cut to :data:`MAX_ERROR_CHARS`)."""
    return QueryResult(key=key, status="failed", error=clip_error(reason),
                       metadata=dict(metadata or {}))


def validate_result(result: Any, objectives: Sequence[str], expected_key: str) -> QueryResult:
    """Return ``result`` if well formed, else a failed result saying what is wrong with it."""
    if not isinstance(result, QueryResult):
        return failed(expected_key, f"oracle returned {type(result).__name__}, not a QueryResult")
    if result.key != expected_key:
        return failed(expected_key, f"oracle answered for key {result.key!r} instead of "
                                    f"{expected_key!r}")
    if result.status not in STATUSES:
        return failed(expected_key, f"oracle status {result.status!r} is not one of {STATUSES}")
    if not isinstance(result.metadata, dict) or json_safe(result.metadata) is not result.metadata:
        result = QueryResult(key=result.key, status=result.status, values=result.values,
                             noise=result.noise, error=result.error,
                             metadata=json_safe(result.metadata))
    if result.status != "succeeded":
        if result.error is not None and len(str(result.error)) > MAX_ERROR_CHARS:
            result = dataclasses.replace(result, error=clip_error(str(result.error)))
        return result
    try:
        values = validate_values(result.values, objectives)
        noise = validate_noise(result.noise, objectives)
    except OracleReplyError as exc:
        return failed(expected_key, f"invalid result: {exc}", result.metadata)
    return QueryResult(key=expected_key, status="succeeded", values=values, noise=noise,
                       error=None, metadata=dict(result.metadata))


def result_from_reply(key: str, reply: Any, objectives: Sequence[str]) -> QueryResult:
    """Build a validated result from a JSON job reply
    ``{"status", "values"?, "noise"?, "error"?, "metadata"?}`` (the lab job API's ``Job``)."""
    if not isinstance(reply, Mapping):
        return failed(key, f"malformed reply: expected a JSON object, got {type(reply).__name__}")
    status = reply.get("status")
    if status not in STATUSES or status == "unknown":
        return failed(key, f"malformed reply: status {status!r} is not one of "
                           f"{[s for s in STATUSES if s != 'unknown']}")
    metadata = reply.get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {"metadata": metadata}
    error = reply.get("error")
    error = None if error is None else clip_error(str(error))
    if status == "failed" and not error:
        error = "the oracle reported the job failed without a reason"
    result = QueryResult(key=key, status=status, values=reply.get("values"),
                         noise=reply.get("noise"), error=error, metadata=metadata)
    return validate_result(result, objectives, key)


def submit_failure_handle(key: str, reason: str, *, retryable: bool) -> JobHandle:
    """A handle for a request that could not be submitted: the next poll reports it as
    ``unknown`` (retryable: resubmit with the same key) or ``failed`` with ``reason``."""
    return JobHandle(key=key, job_id=None,
                     metadata={SUBMIT_ERROR: reason, SUBMIT_RETRYABLE: bool(retryable)})


def submit_failure_result(handle: JobHandle) -> QueryResult | None:
    """The result for a handle made by :func:`submit_failure_handle`, else None."""
    reason = handle.metadata.get(SUBMIT_ERROR) if isinstance(handle.metadata, dict) else None
    if reason is None:
        return None
    if handle.metadata.get(SUBMIT_RETRYABLE):
        return QueryResult(key=handle.key, status="unknown", error=f"not submitted: {reason}")
    return failed(handle.key, f"not submitted: {reason}")
