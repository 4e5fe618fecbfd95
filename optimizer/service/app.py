"""The service's ASGI application: ``create_app(storage, ...)`` → a FastAPI app.

Routes (every one needs a bearer token except ``/healthz`` and ``/readyz``; see
``optimizer.service.auth``):

- ``/healthz``, ``/readyz``, ``/metrics`` (``optimizer.service.routes_ops``)
- ``/v1/campaigns``: create, list, get, pause / resume / cancel / budget / config
  (``routes_campaigns``); rounds, queries, top designs, exports (``routes_results``); the pull
  API for labs (``routes_pull``); the live event stream (``routes_events``). Our errors become
  JSON answers in ``optimizer.service.errors``.
- ``/openapi.json``: the OpenAPI document generated from the routes, committed as
  ``docs/service-openapi.json`` (``python -m optimizer.service.openapi --out …``; a test fails
  when it drifts).

The app drives nothing itself: ``optimizer.service.serve`` runs it next to the scheduler that
drives the campaigns.

    >>> app = create_app(Storage.open(url), metrics=ServiceMetrics())      # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from fastapi import FastAPI

from optimizer.service.auth import TokenVerifier
from optimizer.service.metrics import ServiceMetrics
from storage import Storage

#: The API's version prefix; a breaking change gets a new one.
API_PREFIX = "/v1"


#: Threads running the (blocking) route handlers: about the database pool's 15 connections;
#: more threads would only queue for a connection while contending for the GIL.
HANDLER_THREADS = 16


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
    yield


def create_app(storage: Storage, *, metrics: ServiceMetrics | None = None,
               readiness: Callable[[], dict[str, str]] | None = None,
               replica: str | None = None, token_cache_s: float | None = None) -> FastAPI:
    """The service's API over ``storage``.

    Args:
        storage: the open store every route reads and writes.
        metrics: this process's metrics (``/metrics``); a fresh set when None.
        readiness: returns ``{component: problem}`` for what is not ready besides the database
            (the scheduler's Ray); ``/readyz`` answers 503 while it is not empty.
        replica: this process's name in ``/healthz`` and leases.
        token_cache_s: seconds a verified token is trusted without the database (default 30).
    """
    from tiltloop import __version__

    from optimizer.service import (openapi, routes_campaigns, routes_events, routes_ops,
                                   routes_pull, routes_results)
    from optimizer.service.errors import install_error_handlers

    app = FastAPI(title="tiltloop service", version=__version__, lifespan=_lifespan,
                  description="Campaigns of reward-tilted diffusion sampling against slow "
                              "oracles: manage them, watch them, and (labs) pull their work.",
                  # the document is served by a route that needs a read token like every
                  # other (optimizer.service.openapi); no Swagger page (it loads from a CDN)
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.storage = storage
    app.state.metrics = metrics or ServiceMetrics(storage)
    app.state.readiness = readiness
    app.state.replica = replica
    app.state.verifier = (TokenVerifier(storage) if token_cache_s is None
                          else TokenVerifier(storage, cache_s=token_cache_s))
    install_error_handlers(app)
    app.include_router(routes_ops.router)
    for module in (openapi, routes_campaigns, routes_results, routes_pull, routes_events):
        app.include_router(module.router)
    from optimizer.service.dashboard import routes_dashboard, routes_dashboard_data
    app.include_router(routes_dashboard_data.router)
    app.include_router(routes_dashboard.router)
    return app
