"""The dashboard in Debian's Chromium (Playwright): log in, the campaign list, a campaign page
that updates live from the event stream, the sortable design table, the CSV export against
``tiltloop export``, admin actions for admin tokens only, and no token or secret in the DOM.
Screenshots are saved under each test's ``tmp_path``."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import SECRET_TOKEN_FIELD, finish, record_round
from service_helpers import Live, Tokens
from storage import Storage


def login(page: Any, server: Live, token: str, then: str = "/") -> None:
    page.goto(f"{server.url}/login?next={then}")
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_selector("body[data-ready='1']")


def shoot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_secret(page: Any, *secrets: str) -> None:
    html = page.content()
    text = page.evaluate("document.documentElement.innerText")
    for s in secrets:
        assert s not in html and s not in text
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session


def test_log_in_open_a_campaign_see_results_arrive_sort_and_export(
        new_page: Callable[[], Any], server: Live, tokens: Tokens, storage: Storage,
        campaigns: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = new_page()
    login(page, server, tokens.read)
    rows = page.locator("#campaigns tbody tr")
    assert rows.count() == 2
    vec = page.locator("tr[data-campaign='vec']")
    assert "active" in vec.inner_text() and "16 / 40" in vec.inner_text()
    shoot(page, tmp_path, "01-campaign-list")

    page.click("a[href='/campaigns/vec']")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#card-best .js-plotly-plot")
    for card in ("best", "rounds", "gap", "traces", "table", "gallery", "failures", "config"):
        assert page.locator(f"#card-{card}").is_visible(), card
    assert page.locator("#gallery-parcoords.js-plotly-plot").count() == 1  # vectors
    assert page.locator("#btn-pause").count() == 0  # a read token sees no actions
    assert page.locator("#failures-table tbody tr").count() == 1
    page.wait_for_selector("#live.on")
    assert page.get_attribute("body", "data-results") == "11"

    # a new result stored in the database appears without a reload (the event stream)
    page.evaluate("window.__sameDocument = 42")
    finish(storage, campaigns["vec"][0], 99.5)
    page.wait_for_selector("body[data-results='12']")
    assert page.evaluate("window.__sameDocument") == 42
    assert page.locator("#stat-best .value").inner_text() == "99.5"
    assert page.locator("#top-table tbody tr").first.get_attribute("data-key") == campaigns["vec"][0]
    shoot(page, tmp_path, "02-campaign-live")

    # sort the design table: by round ascending, then descending
    def column(col: str) -> list[float]:
        return [float(t) for t in page.locator(f"#top-table tbody td[data-col='{col}']").all_inner_texts()]

    values = column("v:y")
    assert values == sorted(values, reverse=True)  # best first
    page.click("#top-table th[data-col='round']")
    assert page.get_attribute("#top-table th[data-col='round']", "aria-sort") == "descending"
    assert column("round") == sorted(column("round"), reverse=True)
    page.click("#top-table th[data-col='round']")
    assert column("round") == sorted(column("round"))
    page.click("#top-table th[data-col='v:y']")
    shoot(page, tmp_path, "03-table-sorted")

    # export CSV with one click, and compare with `tiltloop export`
    with page.expect_download() as info:
        page.click("#export-csv button")
    downloaded = Path(info.value.path()).read_text(encoding="utf-8")
    from optimizer.cli import main

    capsys.readouterr()
    assert main(["export", "vec", "--url", str(storage.engine.url.render_as_string(
        hide_password=False)), "--format", "csv", "--out", "-", "-q"]) == 0
    expected = capsys.readouterr().out
    assert list(csv.reader(io.StringIO(downloaded))) == list(csv.reader(io.StringIO(expected)))
    assert len(downloaded.splitlines()) == 17

    assert_no_secret(page, tokens.read, tokens.admin, SECRET_TOKEN_FIELD, "hunter2")
    shoot(page, tmp_path, "04-campaign-bottom")


def test_admin_pauses_and_a_read_token_cannot(
        new_page: Callable[[], Any], server: Live, tokens: Tokens, storage: Storage,
        campaigns: dict[str, list[str]], tmp_path: Path) -> None:
    admin = new_page()
    login(admin, server, tokens.admin, "/campaigns/vec")
    admin.wait_for_selector("#btn-pause")
    assert admin.get_attribute("#status", "data-status") == "active"
    assert admin.is_disabled("#btn-resume")
    admin.click("#btn-pause")
    admin.wait_for_selector("#status[data-status='paused']")
    admin.wait_for_selector("#paused-reason")
    assert storage.load_campaign("vec").status == "paused"
    shoot(admin, tmp_path, "05-admin-paused")
    admin.fill("#budget-total", "60")
    admin.click("#btn-budget")
    admin.wait_for_selector("#stat-budget:has-text('/ 60')")
    admin.click("#btn-resume")
    admin.wait_for_selector("#status[data-status='active']")
    assert_no_secret(admin, tokens.admin, SECRET_TOKEN_FIELD)

    reader = new_page()
    login(reader, server, tokens.read, "/campaigns/vec")
    assert reader.locator("#btn-pause, #btn-resume, #card-admin").count() == 0
    forced = reader.evaluate("""async () => {
        const r = await fetch('/v1/campaigns/vec/pause', {method: 'POST', credentials: 'same-origin',
            headers: {'X-Tiltloop-Dashboard': '1', 'Content-Type': 'application/json'}, body: '{}'});
        return [r.status, await r.text()];
    }""")
    assert forced[0] == 403 and "admin" in forced[1] and tokens.read not in forced[1]
    assert storage.load_campaign("vec").status == "active"


def test_image_prior_gallery_and_status_change_seen_live(
        new_page: Callable[[], Any], server: Live, tokens: Tokens, storage: Storage,
        campaigns: dict[str, list[str]], tmp_path: Path) -> None:
    page = new_page()
    login(page, server, tokens.read, "/campaigns/img")
    assert page.locator("#gallery-images canvas").count() == 12
    size = page.evaluate("(() => { const c = document.querySelector('#gallery-images canvas');"
                         " return [c.width, c.height]; })()")
    assert size == [8, 8]
    page.wait_for_selector("#live.on")
    # an operator pauses it elsewhere: the page shows it without a reload
    from optimizer.campaign import operations

    operations.pause(storage, "img", reason="lab closed for the weekend")
    page.wait_for_selector("#status[data-status='paused']")
    assert "lab closed" in page.locator("#paused-reason").inner_text()
    shoot(page, tmp_path, "06-image-gallery")


PLOTS = ["#card-best .js-plotly-plot", "#card-gap .plot-scatter", "#card-gap .plot-gap",
         "#card-rounds .js-plotly-plot", "#card-traces .plot-alpha"]
#: Every drawn trace of the plots above as sorted points (an appended point lands at the end of
#: its trace, a fresh load draws it in query order: the same data either way).
DRAWN = """(sels) => sels.map((sel) => {
  const gd = document.querySelector(sel);
  return gd.data.map((t) => {
    const cols = ["x", "y", "text", "q1", "median", "q3", "lowerfence", "upperfence"]
      .filter((c) => Array.isArray(t[c]));
    const n = Math.max(...cols.map((c) => t[c].length), 0);
    const rows = [];
    for (let i = 0; i < n; i++) {
      rows.push(JSON.stringify(cols.map((c) => t[c][i] === undefined ? null : t[c][i])));
    }
    const color = t.marker && Array.isArray(t.marker.color) ? [...t.marker.color].sort() : null;
    return { name: t.name, cols: cols, rows: rows.sort(), color: color };
  });
})"""


def test_a_live_update_appends_points_and_draws_what_a_fresh_load_draws(
        new_page: Callable[[], Any], server: Live, tokens: Tokens, storage: Storage,
        campaigns: dict[str, list[str]], tmp_path: Path) -> None:
    page = new_page()
    login(page, server, tokens.read, "/campaigns/vec")
    page.wait_for_selector("#live.on")
    page.evaluate("window.__sameDocument = 7")
    assert page.evaluate("window.TL_STATS.full") == 1
    assert page.evaluate("document.querySelector('#card-best .js-plotly-plot').data[0].x.length") == 11

    finish(storage, campaigns["vec"][0], -3.25)  # an old query's result, then a whole new round
    record_round(storage, "vec", 4, seed=7)
    page.wait_for_selector("body[data-results='16']")
    page.wait_for_function("document.querySelector('#card-best .js-plotly-plot').data[0].x.length === 16")
    stats = page.evaluate("window.TL_STATS")
    assert page.evaluate("window.__sameDocument") == 7  # no reload
    assert stats["full"] == 1 and stats["delta"] >= 1  # only the changes were read
    # the big scatters were extended, never redrawn; unchanged views (the config) not touched
    assert stats["renders"]["best"] == 1 and stats["updates"]["best"] >= 1
    assert stats["renders"]["gap"] == 1 and stats["updates"]["gap"] >= 1
    assert stats["renders"]["config"] == 1 and stats["renders"]["rounds"] >= 2
    best = page.evaluate("document.querySelector('#card-best .js-plotly-plot').data[0]")
    assert best["x"][-5:] == [13, 17, 18, 19, 20] and best["y"][-5] == -3.25  # appended
    shoot(page, tmp_path, "10-live-appended")

    fresh = new_page()
    login(fresh, server, tokens.read, "/campaigns/vec")
    assert fresh.evaluate("window.TL_STATS.full") == 1
    live_drawn = page.evaluate(DRAWN, PLOTS)
    assert live_drawn == fresh.evaluate(DRAWN, PLOTS)
    assert len(live_drawn[0][0]["rows"]) == 16
    # unique ancestors per round, as stored (round.unique_ancestors), in the rounds view
    ancestors = fresh.evaluate("document.querySelector('#card-rounds .js-plotly-plot').data[2]")
    assert ancestors["name"] == "unique ancestors"
    assert ancestors["y"] == [r.unique_ancestors for r in storage.list_rounds("vec")] == [4, 2, 2, 1, 1]
    for sel in ("#stat-best .value", "#stat-results .value", "#top-table tbody", "#failures-table"):
        assert page.locator(sel).inner_text() == fresh.locator(sel).inner_text(), sel


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_live_update_on_postgres(new_page: Callable[[], Any], server: Live, tokens: Tokens,
                                 storage: Storage, campaigns: dict[str, list[str]],
                                 tmp_path: Path) -> None:
    page = new_page()
    login(page, server, tokens.read, "/campaigns/vec")
    page.wait_for_selector("#live.on")
    record_round(storage, "vec", 4, seed=7)  # a whole new round arrives
    page.wait_for_selector("body[data-results='15']")
    assert page.locator("#card-rounds .js-plotly-plot").count() == 1
    assert_no_secret(page, tokens.read, SECRET_TOKEN_FIELD)
    shoot(page, tmp_path, "07-postgres-live")
