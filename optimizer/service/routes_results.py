"""`/v1/campaigns/{name}/…` read views of a campaign's results: rounds, queries (paged, by
status), the top designs, and exports (CSV / JSON / NPY) as downloads. All need ``read`` (or
``lab:<name>`` for its own campaign)."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from optimizer.campaign.export import export_campaign, load_export_rows, stored_objectives
from optimizer.service.auth import need_read
from optimizer.service.schemas import (QueryOut, QueryPage, Responses, RoundList, RoundOut,
                                       TopItem, TopList)
from optimizer.service.views import CampaignName, not_found, storage_of
from storage import Storage
from storage.errors import NotFound

router = APIRouter(prefix="/v1/campaigns/{name}", tags=["results"],
                   dependencies=[Depends(need_read)])

#: The statuses a query filter accepts (``storage.models.QUERY_STATUSES``; a test keeps them equal).
QueryStatus = Literal["pending", "dispatched", "running", "succeeded", "failed", "cancelled"]
#: The largest page of queries one request returns.
MAX_PAGE = 1000
#: The most designs ``top`` returns.
MAX_TOP = 1000
#: ``format`` → (media type, file name suffix).
EXPORT_MEDIA = {"csv": ("text/csv; charset=utf-8", "csv"),
                "json": ("application/json", "json"),
                # NumPy's format has no registered media type: bytes, named .npy
                "npy": ("application/octet-stream", "npy")}
_404: Responses = {404: {"description": "no such campaign"}}


def _exists(storage: Storage, name: str) -> None:
    try:
        storage.load_campaign(name)
    except NotFound:
        raise not_found(name) from None


@router.get("/rounds", response_model=RoundList, summary="The campaign's rounds, in order",
            responses=_404)
def rounds(name: CampaignName, request: Request) -> RoundList:
    storage = storage_of(request)
    _exists(storage, name)
    return RoundList(items=[RoundOut.from_record(r) for r in storage.list_rounds(name)])


@router.get("/queries", response_model=QueryPage, responses=_404,
            summary="The campaign's oracle queries, oldest first, paged, filtered by status")
def queries(name: CampaignName, request: Request,
            status: Annotated[list[QueryStatus] | None, Query(
                description="only queries in these statuses (repeatable)")] = None,
            offset: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100) -> QueryPage:
    storage = storage_of(request)
    _exists(storage, name)
    # storage lists a campaign's queries whole (no designs read); the page is cut here
    found = storage.list_queries(name, statuses=status)
    page = found[offset:offset + limit]
    end = offset + len(page)
    return QueryPage(total=len(found), offset=offset, limit=limit,
                     items=[QueryOut.from_record(q) for q in page],
                     next_offset=end if end < len(found) else None)


@router.get("/top", response_model=TopList, responses=_404,
            summary="The best succeeded queries by the primary objective, with designs")
def top(name: CampaignName, request: Request,
        n: Annotated[int, Query(ge=1, le=MAX_TOP)] = 10) -> TopList:
    storage = storage_of(request)
    _exists(storage, name)
    objectives = stored_objectives(storage, name)
    primary, direction = objectives[0]
    rows = load_export_rows(storage, name, objectives=objectives, top=n)
    items = [TopItem(key=r.key, round=r.round, value=(r.values or {})[primary],
                     values=r.values or {}, noise=r.noise, surrogate_mean=r.surrogate_mean,
                     surrogate_std=r.surrogate_std, design=r.design.tolist(),
                     shape=list(r.design.shape), feasible=r.feasible) for r in rows]
    return TopList(objective=primary, direction=direction, items=items)


@router.get("/export", response_class=Response, responses={
    **_404, 200: {"description": "the export as a download",
                  "content": {"text/csv": {}, "application/json": {},
                              "application/octet-stream": {}}}},
            summary="Download the queries as CSV, JSON, or NPY (the designs, N x shape; "
                    "rows in the JSON export's order)")
def export(name: CampaignName, request: Request,
           format: Literal["csv", "json", "npy"] = "csv",  # noqa: A002 - the API's parameter
           status: Annotated[list[QueryStatus] | None, Query(
               description="only queries in these statuses (repeatable)")] = None,
           top: Annotated[int | None, Query(ge=1, le=100_000,
                                            description="only the best K succeeded")] = None,
           ) -> Response:
    storage = storage_of(request)
    _exists(storage, name)
    objectives = stored_objectives(storage, name)
    statuses = tuple(status) if status else None
    media, suffix = EXPORT_MEDIA[format]
    if format == "npy":
        # export_campaign writes an npy folder (designs.npy + rows); the download is the array
        with tempfile.TemporaryDirectory(prefix="tiltloop-export-") as folder:
            export_campaign(storage, name, Path(folder), format="npy", objectives=objectives,
                            top=top, statuses=statuses)
            content: bytes = (Path(folder) / "designs.npy").read_bytes()
    else:
        buffer = io.StringIO()
        export_campaign(storage, name, None, format=format, objectives=objectives, top=top,
                        statuses=statuses, stream=buffer)
        content = buffer.getvalue().encode("utf-8")
    # the name matched NAME_PATTERN: safe inside the quoted header value
    disposition = f'attachment; filename="{name}.{suffix}"'
    return Response(content, media_type=media, headers={"Content-Disposition": disposition})
