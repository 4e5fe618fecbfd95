"""Fixtures for the service API tests: a real database (a SQLite file, or a private schema on
the test Postgres), the app served by uvicorn on loopback in a thread, real tokens per scope,
and small campaign configs (a tiny MLP prior saved to disk, identity features, a pull oracle).

Nothing drives rounds (no Ray): a test that needs queued queries records a round directly
(:func:`queue_round`), as a driver would.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from optimizer.service.app import create_app
from optimizer.service.metrics import ServiceMetrics
from pg_schemas import postgres_schema_url
from service_helpers import Live, Tokens, config_data
from storage import Storage, upgrade


@pytest.fixture()
def make_config(tiny_prior_path: str) -> Callable[..., dict[str, Any]]:
    """``make_config(name, **sections)`` -> a small valid config dict over the tiny prior."""
    return lambda name, **sections: config_data(name, tiny_prior_path, **sections)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file, or a private schema on the test Postgres server
    (skipped when Postgres is unreachable, failed under TILTLOOP_REQUIRE_POSTGRES=1)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return postgres_schema_url(request.getfixturevalue("pg_schema"))


@pytest.fixture()
def storage(db_url: str) -> Iterator[Storage]:
    """An open store migrated to head."""
    upgrade(db_url)
    store = Storage.open(db_url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture()
def tokens(storage: Storage) -> Tokens:
    """Real tokens in the database (scrypt-hashed), one per scope."""
    return Tokens(*(storage.create_token(scopes)[1]
                    for scopes in (["admin"], ["read"], ["lab:pull-a"], ["lab:pull-b"])))


@pytest.fixture()
def server(storage: Storage) -> Iterator[Live]:
    """``create_app(storage)`` served by uvicorn on 127.0.0.1 (a free port) in a thread."""
    metrics = ServiceMetrics(storage)
    app = create_app(storage, metrics=metrics, replica="test-replica")
    # log_config=None: uvicorn leaves logging alone, so its records reach caplog
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", log_config=None,
                            lifespan="off", timeout_graceful_shutdown=2)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(url=f"http://127.0.0.1:{port}", app=app, metrics=metrics)
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture()
def client(server: Live) -> Iterator[httpx.Client]:
    """An HTTP client of the live server (no token set: pass ``headers=bearer(...)``)."""
    with httpx.Client(base_url=server.url, timeout=15.0) as c:
        yield c
