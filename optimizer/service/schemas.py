"""The `/v1` API's request and response bodies (pydantic), so the OpenAPI document is typed.

Responses are built from storage records and the campaign layer's status by the ``from_*``
helpers; requests are validated here for their shape only (a campaign config is validated by
the campaign layer, which names each bad field).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage.pull import MAX_CLAIM_ITEMS, MAX_LEASE_S
from storage.records import LeaseRecord, QueryRecord, RoundRecord

_ID = Field(min_length=1, max_length=200)
#: The type of a route's ``responses=`` (extra statuses documented in the OpenAPI document).
Responses = dict[int | str, dict[str, Any]]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigBody(_Request):
    """A campaign config: TOML text or the same settings as a JSON object (exactly one)."""

    toml: str | None = Field(None, max_length=1_000_000, description="the config as TOML text")
    config: dict[str, Any] | None = Field(None, description="the config as a JSON object")

    @model_validator(mode="after")
    def _one_of(self) -> ConfigBody:
        if (self.toml is None) == (self.config is None):
            raise ValueError("give the config either as `toml` (text) or as `config` (an "
                             "object), not both and not neither")
        return self


class NewConfigBody(ConfigBody):
    """A new config version of an existing campaign, with an optional note for its history."""

    note: str | None = Field(None, max_length=500, description="why the config changed")


class PauseBody(_Request):
    """Why the campaign is paused (shown in its status and event log)."""

    reason: str = Field("paused through the API", min_length=1, max_length=500)


class BudgetBody(_Request):
    """The campaign's new total budget (oracle queries), stored as a new config version."""

    total: int = Field(ge=1, description="the new total number of oracle queries")


class LeaseOut(BaseModel):
    """Which service replica drives the campaign, and until when (database clock, UTC)."""

    owner: str
    expires_at: datetime
    live: bool

    @classmethod
    def from_record(cls, rec: LeaseRecord | None) -> LeaseOut | None:
        return None if rec is None else cls(owner=rec.owner, expires_at=rec.expires_at,
                                            live=rec.live)


class FailureGroupOut(BaseModel):
    """Failed queries that share a cause."""

    cause: str
    count: int
    example_key: str


class CampaignSummary(BaseModel):
    """A campaign at a glance (the list view)."""

    name: str
    status: str = Field(description="active, paused, completed or cancelled")
    oracle_kind: str
    budget: int = Field(description="total oracle queries the campaign may spend")
    rounds: int
    queries: dict[str, int] = Field(description="number of queries per status")
    in_flight: int = Field(description="queries pending, dispatched or running")
    results: int = Field(description="succeeded queries")
    objective: str
    direction: str
    best: float | None
    best_key: str | None
    created_at: datetime
    updated_at: datetime


class CampaignDetail(CampaignSummary):
    """One campaign in full: its summary, why it is paused, its failures and its lease."""

    stop_target: float | None
    target_reached: bool
    paused_reason: str | None
    failures: list[FailureGroupOut] = Field(description="failed queries by cause, most first")
    lease: LeaseOut | None = Field(description="the replica driving it (None: nobody)")
    config_version: int
    config: dict[str, Any] = Field(description="the current config (as stored)")


class CampaignList(BaseModel):
    """Every campaign, oldest first."""

    items: list[CampaignSummary]


class CreateResult(BaseModel):
    """``created``: False when the campaign already existed with this very config."""

    created: bool
    campaign: CampaignDetail


class OperationResult(BaseModel):
    """A campaign after a pause / resume / cancel / budget / config change."""

    name: str
    status: str
    previous_status: str
    never_sent: list[str] = Field(default_factory=list,
                                  description="cancel: queued queries cancelled before dispatch")
    at_oracle: list[str] = Field(default_factory=list,
                                 description="cancel: queries the oracle was asked to stop")
    config_version: int | None = Field(None, description="budget / config: the new version")
    changed: list[str] = Field(default_factory=list,
                               description="budget / config: the dotted fields that changed")


class RoundOut(BaseModel):
    """One round of the campaign (without its candidates)."""

    index: int
    status: str
    alpha: float
    oracle_name: str | None
    num_candidates: int
    selected: list[int]
    query_keys: list[str]
    timings: dict[str, Any] | None
    summary: dict[str, Any] | None
    config_version: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: RoundRecord) -> RoundOut:
        return cls(index=r.index, status=r.status, alpha=r.alpha, oracle_name=r.oracle_name,
                   num_candidates=r.num_candidates, selected=list(r.selected),
                   query_keys=list(r.query_keys), timings=r.timings, summary=r.summary,
                   config_version=r.config_version, created_at=r.created_at,
                   updated_at=r.updated_at)


class RoundList(BaseModel):
    items: list[RoundOut]


class QueryOut(BaseModel):
    """One oracle query (without its design; ``top`` and ``export`` give designs)."""

    key: str
    round: int
    candidate: int
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

    @classmethod
    def from_record(cls, q: QueryRecord) -> QueryOut:
        return cls(key=q.key, round=q.round_index, candidate=q.candidate_index,
                   oracle_name=q.oracle_name, status=q.status, job_id=q.job_id,
                   attempts=q.attempts, values=q.values, noise=q.noise, error=q.error,
                   lease_owner=q.lease_owner, lease_expires_at=q.lease_expires_at,
                   created_at=q.created_at, updated_at=q.updated_at,
                   dispatched_at=q.dispatched_at, finished_at=q.finished_at)


class QueryPage(BaseModel):
    """One page of queries, oldest first; ``next_offset`` is None on the last page."""

    total: int = Field(description="queries matching the filter, over all pages")
    offset: int
    limit: int
    items: list[QueryOut]
    next_offset: int | None


class TopItem(BaseModel):
    """A succeeded query among the best by the primary objective, with its design."""

    key: str
    round: int
    value: float = Field(description="the primary objective's value")
    values: dict[str, float]
    noise: dict[str, float] | None
    surrogate_mean: float | None
    surrogate_std: float | None
    design: Any = Field(description="the design as nested lists (see `shape`)")
    shape: list[int]
    feasible: bool | None = Field(
        None, description="whether the result meets every `[[constraints]]` bound (feasible "
                          "results rank first); null when the campaign has no constraints")


class TopList(BaseModel):
    """The best ``n`` succeeded queries, best first (feasible ones first with constraints)."""

    objective: str
    direction: str
    items: list[TopItem]


class ClaimBody(_Request):
    """A lab client's request for work. Retrying with the same ``request_id`` returns the same
    items (their leases renewed) instead of new ones."""

    client_id: str = _ID
    request_id: str = _ID
    max_items: int = Field(1, ge=1, le=MAX_CLAIM_ITEMS,
                           description="at most this many items (capped by the campaign's "
                                       "`oracle.max_claim_items`)")
    lease_s: float | None = Field(None, gt=0, le=MAX_LEASE_S,
                                  description="seconds the items are held (default: the "
                                              "campaign's `oracle.lease_s`)")


class ClaimItem(BaseModel):
    """One leased work item: measure ``design`` and report it by ``key``."""

    key: str
    design: Any = Field(description="the design as nested lists (see `shape`)")
    shape: list[int]
    round: int
    candidate: int
    attempts: int = Field(description="how many times the item was handed out")
    lease_expires_at: datetime | None

    @classmethod
    def from_record(cls, q: QueryRecord) -> ClaimItem:
        assert q.design is not None  # claims load designs
        return cls(key=q.key, design=q.design.tolist(), shape=list(q.design.shape),
                   round=q.round_index, candidate=q.candidate_index, attempts=q.attempts,
                   lease_expires_at=q.lease_expires_at)


class ClaimResult(BaseModel):
    """Work leased to the client; no items when nothing is queued or the campaign is not
    active (``campaign_status`` says which)."""

    campaign_status: str
    items: list[ClaimItem]


class ReportBody(_Request):
    """A lab client's result for one claimed item: ``values`` (measured) or ``error`` (the
    measurement failed, with the reason)."""

    client_id: str = _ID
    key: str = Field(min_length=1, max_length=400)
    values: dict[str, float] | None = None
    noise: dict[str, float] | None = None
    error: str | None = Field(None, max_length=10_000)


class ReportResult(BaseModel):
    """``stored``: False when this client already reported this very result (a retry)."""

    stored: bool
