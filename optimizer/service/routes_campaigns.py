"""`/v1/campaigns`: create, list and inspect campaigns, and operate them (pause, resume,
cancel, budget, new config version).

Every handler is a sync ``def``: FastAPI runs it in its thread pool, so the blocking work
(database, config validation, loading the prior in preflight) never stalls the event loop.
A config is validated completely (fields, prior, oracle, imports) before anything is written.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from optimizer.campaign import operations
from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import check_imports, preflight, start_or_resume
from optimizer.service.auth import need_admin, need_read
from optimizer.service.schemas import (BudgetBody, CampaignDetail, CampaignList, ConfigBody,
                                       CreateResult, NewConfigBody, OperationResult, PauseBody,
                                       Responses)
from optimizer.service.views import (CampaignName, config_from_body, detail, not_found,
                                     storage_of, stored_config, summary)
from storage.errors import CampaignExists, InvalidValue, NotFound

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
log = logging.getLogger(__name__)

_ERRORS: Responses = {404: {"description": "no such campaign"},
           409: {"description": "the campaign's state does not allow it"}}
_CONFIG_ERRORS: Responses = {422: {"description": "the config is invalid (the field is named)"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreateResult,
             dependencies=[Depends(need_admin)],
             summary="Create a campaign from a TOML or JSON config (idempotent)",
             responses={200: {"description": "it already exists with this config",
                              "model": CreateResult},
                        409: {"description": "the name is taken by another config, or cancelled"},
                        **_CONFIG_ERRORS})
def create_campaign(body: ConfigBody, request: Request, response: Response) -> CreateResult:
    storage = storage_of(request)
    source = "the request body"
    config = config_from_body(body, source)
    preflight(config, source=source)
    check_imports(config, storage, source=source)
    try:
        created = start_or_resume(config, storage, source=source)
    except CampaignExists:  # the same request, concurrently, created it first: compare again
        created = start_or_resume(config, storage, source=source)
    if not created:
        response.status_code = status.HTTP_200_OK
    log.info("campaign %s %s through the API", config.name, "created" if created else "exists")
    return CreateResult(created=created, campaign=detail(storage, config.name))


@router.get("", response_model=CampaignList, dependencies=[Depends(need_read)],
            summary="Every campaign with its status summary, oldest first")
def list_campaigns(request: Request) -> CampaignList:
    storage = storage_of(request)
    items = []
    for rec in storage.list_campaigns():
        try:
            items.append(summary(storage, rec.name))
        except HTTPException as exc:  # deleted since it was listed: leave it out
            if exc.status_code != status.HTTP_404_NOT_FOUND:
                raise
    return CampaignList(items=items)


@router.get("/{name}", response_model=CampaignDetail, dependencies=[Depends(need_read)],
            summary="One campaign: status, budget, best, in flight, failures, lease",
            responses={404: _ERRORS[404]})
def get_campaign(name: CampaignName, request: Request) -> CampaignDetail:
    return detail(storage_of(request), name)


def _previous(request: Request, name: str) -> str:
    try:
        return storage_of(request).load_campaign(name).status
    except NotFound:
        raise not_found(name) from None


@router.post("/{name}/pause", response_model=OperationResult, dependencies=[Depends(need_admin)],
             summary="Pause: nothing new is generated or dispatched", responses=_ERRORS)
def pause(name: CampaignName, request: Request, body: PauseBody | None = None) -> OperationResult:
    storage = storage_of(request)
    _previous(request, name)
    was = operations.pause(storage, name, reason=(body or PauseBody()).reason)
    return OperationResult(name=name, status=storage.load_campaign(name).status,
                           previous_status=was)


@router.post("/{name}/resume", response_model=OperationResult,
             dependencies=[Depends(need_admin)], summary="Resume a paused campaign",
             responses=_ERRORS)
def resume(name: CampaignName, request: Request) -> OperationResult:
    storage = storage_of(request)
    _previous(request, name)
    was = operations.unpause(storage, name)
    return OperationResult(name=name, status=storage.load_campaign(name).status,
                           previous_status=was)


@router.post("/{name}/cancel", response_model=OperationResult,
             dependencies=[Depends(need_admin)],
             summary="Cancel for good: queued queries never reach the oracle",
             responses=_ERRORS)
def cancel(name: CampaignName, request: Request) -> OperationResult:
    storage = storage_of(request)
    config = stored_config(storage, name)
    was = storage.load_campaign(name).status
    outcome = operations.cancel(storage, name, config)
    return OperationResult(name=name, status=storage.load_campaign(name).status,
                           previous_status=was, never_sent=list(outcome.never_sent),
                           at_oracle=list(outcome.at_oracle))


@router.post("/{name}/budget", response_model=OperationResult,
             dependencies=[Depends(need_admin)],
             summary="Set the total budget (a new config version; reopens a completed campaign)",
             responses={**_ERRORS, **_CONFIG_ERRORS})
def set_budget(name: CampaignName, body: BudgetBody, request: Request) -> OperationResult:
    storage = storage_of(request)
    config = stored_config(storage, name)
    was = storage.load_campaign(name).status
    if body.total == config.budget.total:  # a retried request: nothing to store
        return OperationResult(name=name, status=was, previous_status=was,
                               config_version=storage.current_config_version(name))
    spent = sum(storage.query_counts(name).values())
    if body.total < spent:
        raise InvalidValue(f"total: campaign {name!r} has already spent {spent} queries; the "
                           f"budget cannot go below that (got {body.total})")
    data = config.to_json_dict()
    data["budget"] = {**data["budget"], "total": body.total}
    new = parse_config(data, f"the budget of campaign {name!r}")
    version, changed = operations.new_config_version(
        storage, name, new, note=f"budget.total {config.budget.total} -> {body.total} (API)")
    return OperationResult(name=name, status=storage.load_campaign(name).status,
                           previous_status=was, config_version=version, changed=changed)


@router.post("/{name}/config", response_model=OperationResult,
             dependencies=[Depends(need_admin)],
             summary="Store a new config version (validated first; same campaign name)",
             responses={**_ERRORS, **_CONFIG_ERRORS})
def new_config(name: CampaignName, body: NewConfigBody, request: Request) -> OperationResult:
    storage = storage_of(request)
    was = _previous(request, name)
    source = "the request body"
    config = config_from_body(body, source)
    preflight(config, source=source)
    check_imports(config, storage, source=source)
    version, changed = operations.new_config_version(storage, name, config, note=body.note)
    return OperationResult(name=name, status=storage.load_campaign(name).status,
                           previous_status=was, config_version=version, changed=changed)
