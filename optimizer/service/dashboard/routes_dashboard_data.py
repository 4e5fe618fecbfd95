"""Read-only data routes of the dashboard: who the caller is, and one campaign's views' data.

- ``GET /v1/whoami``: the caller's scopes (never its token), so a page shows admin actions only
  to an ``admin`` token (the actions' routes check the scope anyway);
- ``GET /v1/campaigns/{name}/dashboard``: :func:`optimizer.service.dashboard.data.campaign_bundle`
  (per-round α / ESS / λ / ancestors traces, surrogate-vs-oracle gap, Pareto front, top designs,
  failures by cause, the config and its versions with secrets redacted); ``?after=CURSOR`` (the
  ``cursor`` of a previous answer, an event id): only the queries changed since, for a live page.

Both need a token like every ``/v1`` route (``read``, or ``lab:<name>`` for its own campaign).
They serve the dashboard's pages and are left out of the committed OpenAPI document
(``include_in_schema=False``): the bundle's shape follows the views and may change with them.
"""
from __future__ import annotations

import gzip
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from optimizer.service.auth import Principal, need_read, principal_of
from optimizer.service.dashboard.data import DEFAULT_TOP, campaign_bundle
from optimizer.service.views import CampaignName, not_found, storage_of
from storage.errors import NotFound

router = APIRouter(tags=["dashboard"])
#: Answers above this many bytes are gzipped for a client that accepts it (a full bundle of
#: 10,000 queries is ~850 KB of JSON, ~4x smaller gzipped).
GZIP_ABOVE = 8192


@router.get("/v1/whoami", include_in_schema=False)
def whoami(principal: Principal = Depends(principal_of)) -> dict[str, Any]:
    """The caller's scopes and what they allow (no secret, no prefix)."""
    return {"scopes": list(principal.scopes), "admin": principal.can_admin(),
            "read": principal.can_read()}


@router.get("/v1/campaigns/{name}/dashboard", include_in_schema=False,
            dependencies=[Depends(need_read)])
def dashboard_data(name: CampaignName, request: Request,
                   top: Annotated[int, Query(ge=1, le=1000)] = DEFAULT_TOP,
                   after: Annotated[int | None, Query(ge=0)] = None) -> Response:
    storage = storage_of(request)
    try:
        storage.load_campaign(name)
        bundle = campaign_bundle(storage, name, top=top, after=after)
    except NotFound:
        raise not_found(name) from None
    # plain JSON columns: json.dumps directly (FastAPI's encoder walks every value in Python)
    body = json.dumps(bundle, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-store"}
    if len(body) > GZIP_ABOVE and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)
