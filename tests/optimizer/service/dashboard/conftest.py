"""Fixtures of the dashboard tests: the service app on loopback (the parent folder's ``server``,
``storage`` and ``tokens`` fixtures, over SQLite unless a test asks for Postgres with
``@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)``), campaigns with stored
results, and Debian's Chromium driven by Playwright (never a downloaded browser).

The browser tests are skipped when ``/usr/bin/chromium`` is missing, except under ``CI`` (set):
there they fail, since ``.ci/run`` installs the ``chromium`` package.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service_helpers import Live
from dashboard_helpers import SECRET_TOKEN_FIELD, SECRET_URL, create_campaign, record_round
from pg_schemas import postgres_schema_url
from storage import Storage

CHROMIUM = Path(os.environ.get("TILTLOOP_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture()
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; ``postgres`` (indirect parameter): a private schema on the test server."""
    if getattr(request, "param", "sqlite") == "postgres":
        return postgres_schema_url(request.getfixturevalue("pg_schema"))
    return f"sqlite:///{tmp_path / 'dashboard.db'}"


@pytest.fixture()
def campaigns(storage: Storage, make_config: Callable[..., dict[str, Any]]) -> dict[str, list[str]]:
    """Two campaigns: ``vec`` (2-d designs, 3 rounds with results and failures, one round
    queued) and ``img`` (1x8x8 designs, 2 rounds). Returns the queued keys of ``vec``."""
    vec = make_config("vec", oracle={"kind": "http", "base_url": "http://127.0.0.1:9",
                                     "token_env": SECRET_TOKEN_FIELD},
                      storage={"url": SECRET_URL}, budget={"total": 40})
    create_campaign(storage, "vec", vec)
    for r in range(3):
        record_round(storage, "vec", r, fail=1 if r == 1 else 0)
    queued = record_round(storage, "vec", 3, succeed=False)
    create_campaign(storage, "img", make_config("img", budget={"total": 40}))
    for r in range(2):
        record_round(storage, "img", r, shape=(1, 8, 8), q=6, num=8)
    return {"vec": queued}


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (session-wide; each test opens its own context)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing under CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the browser "
                    f"tests (apt-get install -y chromium); no browser is ever downloaded")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'playwright>=1.45,<2'")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def new_page(server: Live, chromium_browser: Any) -> Iterator[Callable[[], Any]]:
    """``new_page()`` -> a page in a fresh browser context (its own cookies), closed at the end
    (before the server stops: its event streams end with the pages)."""
    contexts: list[Any] = []

    def make() -> Any:
        ctx = chromium_browser.new_context(viewport={"width": 1400, "height": 1000},
                                           accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
