"""The pull API for labs (campaigns whose ``[oracle] kind = "pull"``): a lab client claims
leased work items and reports their results; it needs no inbound connection.

- ``POST /v1/campaigns/{name}/claims``: up to ``max_items`` queued queries, leased for
  ``lease_s`` (default: the campaign's ``oracle.lease_s``). A retry with the same
  ``(client_id, request_id)`` returns the same items, leases renewed (storage keeps the claim).
  A campaign that is not active hands out nothing: ``items`` is empty and ``campaign_status``
  says why.
- ``POST /v1/campaigns/{name}/reports``: the result of one claimed item, stored once; an
  identical retry answers ``stored: false``. A report after the lease expired is still
  accepted while nobody else claimed the item (the measurement was paid for).

Both need ``lab:<name>`` (or ``admin``); a key must belong to campaign ``name``, so a lab token
of one campaign can never report for another.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from optimizer.campaign.config_constraints import stored_constraints
from optimizer.campaign.config_oracle import PullOracleConfig, stored_oracle
from optimizer.service.auth import need_lab
from optimizer.service.schemas import ClaimBody, ClaimItem, ClaimResult, ReportBody, ReportResult
from optimizer.service.views import CampaignName, not_found, storage_of
from storage.errors import NotFound

router = APIRouter(prefix="/v1/campaigns/{name}", tags=["pull"], dependencies=[Depends(need_lab)])
log = logging.getLogger(__name__)


@router.post("/claims", response_model=ClaimResult, summary="Claim leased work items",
             responses={404: {"description": "no such campaign"},
                        409: {"description": "the campaign's oracle is not `pull`"}})
def claim(name: CampaignName, body: ClaimBody, request: Request) -> ClaimResult:
    storage = storage_of(request)
    try:
        rec = storage.load_campaign(name)
    except NotFound:
        raise not_found(name) from None
    oracle = stored_oracle(rec.config, name)
    if not isinstance(oracle, PullOracleConfig):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=(
            f"campaign {name!r} has oracle kind {oracle.kind!r}, not 'pull': the service "
            f"dispatches its queries itself, labs cannot claim them"))
    if rec.status != "active":  # paused, completed, cancelled: never new work
        return ClaimResult(campaign_status=rec.status, items=[])
    records = storage.claim_work(name, body.client_id, body.request_id,
                                 min(body.max_items, oracle.max_claim_items),
                                 body.lease_s if body.lease_s is not None else oracle.lease_s)
    # a retried request returns its items in their current state: keep those the client still
    # holds (an item another client took over since, or already reported, is not its work)
    held = [q for q in records if q.status == "dispatched" and q.lease_owner == body.client_id]
    if held:
        request.app.state.metrics.pull_items.labels(action="claimed").inc(len(held))
    log.info("campaign %s: client %s claimed %d items (request %s)", name, body.client_id,
             len(held), body.request_id)
    return ClaimResult(campaign_status=rec.status, items=[ClaimItem.from_record(q) for q in held])


@router.post("/reports", response_model=ReportResult, summary="Report one claimed item's result",
             responses={404: {"description": "no such campaign, or the key is not one of its "
                                             "queries"},
                        409: {"description": "the client does not hold the item (another "
                                             "client claimed it since, or it has another "
                                             "result)"}})
def report(name: CampaignName, body: ReportBody, request: Request) -> ReportResult:
    storage = storage_of(request)
    missing = HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"query {body.key!r} is not a query of campaign {name!r}")
    try:
        query = storage.get_query(body.key, with_design=False)
    except NotFound:
        raise missing from None
    if query.campaign != name:  # the same answer as for no such key: nothing leaks across
        raise missing
    if body.error is None:
        _check_outputs(storage, name, body.key, body.values)
    stored = storage.report_work(body.key, body.client_id, values=body.values, error=body.error,
                                 noise=body.noise)
    if stored:
        request.app.state.metrics.pull_items.labels(action="reported").inc()
    log.info("campaign %s key %s: client %s reported %s (%s)", name, body.key, body.client_id,
             "an error" if body.error is not None else "values",
             "stored" if stored else "a repeat")
    return ReportResult(stored=stored)


def _check_outputs(storage: Any, name: str, key: str, values: dict[str, float] | None) -> None:
    """A result must carry every objective and constraint output of the campaign (as a pushed
    oracle's result must, ``Dispatcher``): 422 naming the missing ``values.<output>``, nothing
    stored, the item stays claimed so the lab can report it again."""
    config = storage.load_campaign(name).config or {}
    needed = [o.get("name") for o in config.get("objectives") or [] if isinstance(o, dict)]
    needed += [c.name for c in stored_constraints(config)]
    lacking = [n for n in needed if n and n not in (values or {})]
    if lacking:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=(
            f"query {key!r} of campaign {name!r}: field `values` lacks "
            + ", ".join(f"`values.{n}`" for n in lacking)
            + f"; a result reports every output the campaign records ({', '.join(map(str, needed))})"
              ", or an `error`"))
