"""How the service answers an error: our exception classes mapped to HTTP statuses with a
one-line ``{"detail": "..."}`` body.

Routes raise the project's own errors (``storage.errors``, ``optimizer.errors``); the handlers
installed by :func:`install_error_handlers` turn them into responses, so no route repeats the
mapping and no traceback reaches a client. Request validation errors keep FastAPI's list shape
(``loc``, ``msg``, ``type``: what the OpenAPI document declares) but never echo the input, which
may hold something the caller should not see repeated in a log or a proxy.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from optimizer.errors import (CampaignConfigError, CampaignStateError, ConfigError,
                              PreflightError)
from storage.errors import (CampaignBusy, CampaignExists, ConfigVersionConflict,
                            DatabaseUnreachable, InvalidTransition, InvalidValue, JobIdConflict,
                            NotFound, RoundConflict, SchemaError, StorageError, WorkNotHeld)
from tiltloop.errors import TiltloopError

log = logging.getLogger(__name__)

#: Our errors by HTTP status, most specific first (the first ``isinstance`` match wins).
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (InvalidValue, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (CampaignConfigError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (PreflightError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (ConfigError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (WorkNotHeld, status.HTTP_409_CONFLICT),
    (CampaignStateError, status.HTTP_409_CONFLICT),
    (CampaignExists, status.HTTP_409_CONFLICT),
    (CampaignBusy, status.HTTP_409_CONFLICT),
    (ConfigVersionConflict, status.HTTP_409_CONFLICT),
    (RoundConflict, status.HTTP_409_CONFLICT),
    (InvalidTransition, status.HTTP_409_CONFLICT),
    (JobIdConflict, status.HTTP_409_CONFLICT),
    (DatabaseUnreachable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (SchemaError, status.HTTP_503_SERVICE_UNAVAILABLE),
    # any other database failure is ours, not the caller's
    (StorageError, status.HTTP_500_INTERNAL_SERVER_ERROR),
    # an error raised on purpose that has no better status: the request could not be done
    (TiltloopError, status.HTTP_400_BAD_REQUEST),
)


def status_of(exc: Exception) -> int:
    """The HTTP status of one of our errors (400 for an unlisted ``TiltloopError``)."""
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return status.HTTP_400_BAD_REQUEST


async def _tiltloop_error(request: Request, exc: Exception) -> JSONResponse:
    code = status_of(exc)
    detail = str(exc).strip() or type(exc).__name__
    if code >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, detail)
    else:
        log.info("%s %s -> %d: %s", request.method, request.url.path, code, detail.splitlines()[0])
    return JSONResponse({"detail": detail}, status_code=code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type", "")}
              for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _message(error: dict) -> str:  # type: ignore[type-arg]  # pydantic's error dicts are untyped
    loc = tuple(error.get("loc", ()))
    if loc == ("path", "name"):  # the pattern or the length
        return ("campaign name is invalid: use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
    field = ".".join(str(p) for p in loc[1:]) or "(body)"
    return f"field `{field}`: {error.get('msg', 'invalid')}"


def install_error_handlers(app: FastAPI) -> None:
    """Map our errors (any ``TiltloopError``) and request validation errors to JSON answers."""
    app.add_exception_handler(TiltloopError, _tiltloop_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
