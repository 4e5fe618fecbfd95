"""What crosses the repository API: frozen dataclasses in, frozen dataclasses out.

Designs are numpy arrays (``d``-dim or any shape per design); results are JSON-ready dicts
``{objective: value}``; timestamps come from the database clock (UTC).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

#: Query statuses that are still waiting on the oracle.
IN_FLIGHT = ("pending", "dispatched", "running")
#: Query statuses that end the lifecycle.
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, eq=False)
class NewCandidate:
    """One particle of a round, as the loop hands it to :meth:`Storage.record_round`.

    Args:
        design: the design (any numeric array-like; stored as npy bytes).
        features: optional feature vector (e.g. an embedding) used by the surrogate.
        log_weight: the SMC log-weight of the particle.
        group: lineage — which group (prompt / context) the particle belongs to.
        particle: lineage — the particle's index within its group.
        surrogate_mean, surrogate_std, acquisition: the surrogate's screening values.
        excluded_reason: why screening left the candidate out (e.g. "queried": a duplicate of a
            design already queried), or None.
    """

    design: Any
    features: Any | None = None
    log_weight: float | None = None
    group: int | None = None
    particle: int | None = None
    surrogate_mean: float | None = None
    surrogate_std: float | None = None
    acquisition: float | None = None
    excluded_reason: str | None = None


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as stored."""

    name: str
    status: str
    config: dict[str, Any]
    budget: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConfigVersionRecord:
    """One version of a campaign's config (versions count 1, 2, ... per campaign)."""

    version: int
    config: dict[str, Any]
    note: str | None
    created_at: datetime


@dataclass(frozen=True, eq=False)
class RoundRecord:
    """A round as stored; ``surrogate_blob`` is only loaded by :meth:`Storage.load_round`.

    ``config_version``: the campaign config version the round was generated with (None for a
    round written before schema revision 0003 had versions). ``unique_ancestors``: how many
    distinct founders (initial particles) its final particles descend from, summed over its
    chunks (None: written before revision 0007, or not given).
    """

    campaign: str
    index: int
    status: str
    alpha: float
    oracle_name: str | None
    num_candidates: int
    selected: tuple[int, ...]
    query_keys: tuple[str, ...]
    surrogate_state: dict[str, Any] | None
    timings: dict[str, Any] | None
    summary: dict[str, Any] | None
    content_hash: str
    created_at: datetime
    updated_at: datetime
    surrogate_blob: bytes | None = None
    config_version: int | None = None
    unique_ancestors: int | None = None


@dataclass(frozen=True, eq=False)
class CandidateRecord:
    """A stored candidate with its decoded design and, if selected, its query key."""

    round_index: int
    index: int
    design: np.ndarray
    design_hash: str
    features: np.ndarray | None
    log_weight: float | None
    group: int | None
    particle: int | None
    surrogate_mean: float | None
    surrogate_std: float | None
    acquisition: float | None
    selected: bool
    query_key: str | None
    excluded_reason: str | None = None


class QueryPoint(NamedTuple):
    """One oracle query as a plot needs it (no design, no timestamps): see
    :meth:`Storage.query_points`. ``surrogate_mean`` is as stored (the surrogate maximizes)."""

    id: int
    key: str
    round_index: int
    status: str
    values: dict[str, float] | None
    error: str | None
    surrogate_mean: float | None
    surrogate_std: float | None


@dataclass(frozen=True, eq=False)
class QueryRecord:
    """An oracle query as stored (``design`` is set where the call says it loads designs)."""

    key: str
    campaign: str
    round_index: int
    candidate_index: int
    oracle_name: str
    status: str
    job_id: str | None
    attempts: int
    values: dict[str, float] | None
    noise: dict[str, float] | None
    error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    dispatched_at: datetime | None
    finished_at: datetime | None
    design: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class History:
    """Everything a resumed campaign needs, loaded in one query by :meth:`Storage.load_history`.

    ``completed``: succeeded queries (design, values, noise); ``in_flight``: pending / dispatched /
    running queries with their keys and job ids (re-poll these, never resubmit blindly);
    ``failed``: failed and cancelled queries with their reasons. Each in query-creation order.
    """

    campaign: str
    completed: tuple[QueryRecord, ...] = field(default_factory=tuple)
    in_flight: tuple[QueryRecord, ...] = field(default_factory=tuple)
    failed: tuple[QueryRecord, ...] = field(default_factory=tuple)

    def X(self) -> np.ndarray:  # noqa: N802 — BoTorch's name at the surrogate edge
        """Completed designs stacked: `n x *design_shape`-dim array (`0 x 0` when empty)."""
        if not self.completed:
            return np.zeros((0, 0))
        if self.completed[0].design is None:
            raise ValueError(f"history of campaign {self.campaign!r} was loaded without designs; "
                             f"call load_history({self.campaign!r}) with with_design=True")
        return np.stack([q.design for q in self.completed])  # type: ignore[misc]

    def Y(self, objectives: list[str] | tuple[str, ...]) -> np.ndarray:  # noqa: N802
        """Completed values: `n x m`-dim array, columns in the order of ``objectives``."""
        return np.array(
            [[q.values[o] for o in objectives] for q in self.completed],  # type: ignore[index]
            dtype=np.float64,
        ).reshape(len(self.completed), len(objectives))


@dataclass(frozen=True)
class EventRecord:
    """One audit-log entry."""

    id: int
    campaign: str
    kind: str
    actor: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class LeaseRecord:
    """A campaign's lease: who drives it and until when (database clock, UTC).

    ``live``: whether ``expires_at`` was still in the future by the database clock when read.
    """

    campaign: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    live: bool


@dataclass(frozen=True)
class TokenRecord:
    """An API token as listed: never its secret, never its hash.

    ``prefix`` (e.g. ``"tl_AbC123xY"``) names the token in listings and for revocation;
    ``scopes``: ``"admin"``, ``"read"``, ``"lab:<campaign>"``.
    """

    id: int
    prefix: str
    scopes: tuple[str, ...]
    note: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        """Whether the token was revoked (it no longer verifies)."""
        return self.revoked_at is not None
