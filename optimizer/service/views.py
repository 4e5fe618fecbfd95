"""What the routes share: the campaign-name path parameter, the request's store, campaign status
views, and configs read from a request body.

Every function here is blocking (database, config parsing, prior loading): routes call them
from sync ``def`` handlers, which FastAPI runs in its thread pool.
"""
from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import HTTPException, Path, Request, status

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import parse_config, resolve_paths
from optimizer.campaign.driver import campaign_status
from optimizer.errors import CampaignConfigError
from optimizer.service.schemas import (CampaignDetail, CampaignSummary, ConfigBody,
                                       FailureGroupOut, LeaseOut)
from storage import Storage
from storage.errors import NotFound
from storage.session import NAME_PATTERN
from tiltloop.toml import tomllib

#: A campaign name in a path: checked against the storage's pattern before any route runs, so
#: a name with quotes, slashes or dots reaches no SQL (and would only ever be a bound parameter).
CampaignName = Annotated[str, Path(pattern=NAME_PATTERN.pattern, max_length=128,
                                   description="campaign name: 1-128 letters, digits, '.', '_' "
                                               "or '-', starting with a letter or digit")]


def storage_of(request: Request) -> Storage:
    """The app's store."""
    store: Storage = request.app.state.storage
    return store


def not_found(name: str) -> HTTPException:
    """404 for a campaign that does not exist (without listing the others: a lab token may ask)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"campaign {name!r} not found")


def stored_config(storage: Storage, name: str) -> CampaignConfig:
    """The current config of campaign ``name``; 404 when there is no such campaign."""
    try:
        rec = storage.load_campaign(name)
    except NotFound:
        raise not_found(name) from None
    return parse_config(rec.config, f"the config stored with campaign {name!r}")


def summary(storage: Storage, name: str) -> CampaignSummary:
    """The list view of one campaign (failure reasons are not read)."""
    return _view(storage, name, detail=False)


def detail(storage: Storage, name: str, *,
           best: tuple[float | None, str | None] | None = None) -> CampaignDetail:
    """The full view of one campaign: status, budget, best, in flight, failures by cause,
    why it is paused, its lease and config version (``best``: ``(value, key)`` when the caller
    already knows it; else it is read from the history)."""
    view = _view(storage, name, detail=True, best=best)
    assert isinstance(view, CampaignDetail)
    return view


def _view(storage: Storage, name: str, *, detail: bool,
          best: tuple[float | None, str | None] | None = None) -> CampaignSummary:
    try:
        rec = storage.load_campaign(name)
    except NotFound:
        raise not_found(name) from None
    config = parse_config(rec.config, f"the config stored with campaign {name!r}")
    st = campaign_status(storage, name, config, best=best, with_failures=detail)
    head = CampaignSummary(
        name=name, status=rec.status, oracle_kind=config.oracle.kind, budget=st.budget,
        rounds=st.rounds, queries=st.queries, in_flight=st.in_flight, results=st.results,
        objective=st.objective, direction=st.direction, best=st.best, best_key=st.best_key,
        created_at=rec.created_at, updated_at=rec.updated_at)
    if not detail:
        return head
    return CampaignDetail(
        **head.model_dump(),
        stop_target=st.stop_target, target_reached=st.target_reached,
        paused_reason=st.paused_reason,
        failures=[FailureGroupOut(cause=c, count=n, example_key=k) for c, n, k in st.failures],
        lease=LeaseOut.from_record(storage.campaign_lease(name)),
        config_version=storage.current_config_version(name), config=rec.config)


def config_from_body(body: ConfigBody, source: str) -> CampaignConfig:
    """The validated config of a request body (TOML text or a JSON object).

    Relative paths (a prior folder, a command oracle's ``cwd``) resolve against the service's
    working directory, and the stored snapshot keeps them absolute, as ``tiltloop run`` does
    against the config file's folder.

    Raises:
        CampaignConfigError: bad TOML, or a bad field (named).
    """
    if body.toml is not None:
        try:
            data = tomllib.loads(body.toml)
        except tomllib.TOMLDecodeError as exc:
            raise CampaignConfigError(f"{source} is not valid TOML: {exc}") from None
    else:
        data = dict(body.config or {})
    return parse_config(resolve_paths(data, FilePath.cwd()), source)
