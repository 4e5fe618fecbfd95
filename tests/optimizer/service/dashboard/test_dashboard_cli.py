"""``tiltloop dashboard``: a local read-only view (a read token created at start, revoked at
exit; the login URL carries it in its fragment) and ``--html``: the campaign page as one
self-contained file that draws the same views offline."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from dashboard_helpers import SECRET_TOKEN_FIELD
from optimizer.service.dashboard.cli import TOKEN_NOTE, serve_dashboard
from optimizer.service.dashboard.report_html import write_dashboard_report
from storage import Storage


def test_local_dashboard_logs_in_from_the_printed_url_and_revokes_its_token(
        db_url: str, storage: Storage, campaigns: dict[str, list[str]],
        chromium_browser: Any, tmp_path: Path) -> None:
    links: list[str] = []
    servers: list[Any] = []
    thread = threading.Thread(target=serve_dashboard, args=(db_url,), kwargs={
        "port": 0, "announce": links.append, "on_server": servers.append}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not links:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    link = links[0]
    base, _, fragment = link.partition("/login#token=")
    assert base.startswith("http://127.0.0.1:") and fragment.startswith("tl_")
    ctx = chromium_browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(link)
        page.wait_for_selector("body[data-ready='1']")
        assert page.url == base + "/" and fragment not in page.url
        assert page.locator("#campaigns tbody tr").count() == 2
        page.screenshot(path=str(tmp_path / "08-local-dashboard.png"), full_page=True)
        # read-only: the token cannot pause
        r = httpx.post(f"{base}/v1/campaigns/vec/pause", json={},
                       headers={"Authorization": f"Bearer {fragment}"})
        assert r.status_code == 403
    finally:
        ctx.close()
        servers[0].should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive()
    assert storage.verify_token(fragment) is None  # revoked at exit
    assert any(t.note == TOKEN_NOTE and t.revoked_at is not None for t in storage.list_tokens())


def test_self_contained_report_draws_the_same_views_offline(
        storage: Storage, campaigns: dict[str, list[str]], new_page: Callable[[], Any],
        tmp_path: Path) -> None:
    out = write_dashboard_report(storage, "img", tmp_path / "report" / "img.html")
    html = out.read_text(encoding="utf-8")
    assert "/static/" not in html and "src=\"http" not in html and SECRET_TOKEN_FIELD not in html
    page = new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#card-best .js-plotly-plot")
    assert page.locator("#gallery-images canvas").count() == 12
    assert page.locator("#top-table tbody tr").count() == 12
    assert page.locator("#export-csv, #btn-pause").count() == 0
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched
    page.screenshot(path=str(tmp_path / "09-report.png"), full_page=True)
