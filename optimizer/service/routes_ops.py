"""Operations routes: ``/healthz`` (the process answers), ``/readyz`` (database and Ray
reachable) and ``/metrics`` (Prometheus text; needs a ``read`` token like every other route
except the two health checks)."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from optimizer.service.auth import need_read
from optimizer.service.metrics import CONTENT_TYPE
from storage.engine import connect_check

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/healthz", summary="The process is up (no dependencies checked)")
def healthz(request: Request) -> dict[str, Any]:
    return {"status": "ok", "replica": request.app.state.replica}


@router.get("/readyz", summary="Ready to serve: the database answers, and Ray where it is used",
            responses={503: {"description": "a dependency does not answer; `problems` says which"}})
def readyz(request: Request) -> JSONResponse:
    problems: dict[str, str] = {}
    try:
        connect_check(request.app.state.storage.engine)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; say which
        problems["database"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    readiness = request.app.state.readiness
    if readiness is not None:
        try:
            problems.update(readiness())
        except Exception as exc:  # noqa: BLE001
            problems["scheduler"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if problems:
        log.warning("readyz: not ready: %s", problems)
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready", "problems": {}})


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response, dependencies=[Depends(need_read)])
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
