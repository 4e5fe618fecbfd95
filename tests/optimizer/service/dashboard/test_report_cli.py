"""``tiltloop report``: the campaign's dashboard views in one self-contained HTML file (the same
renderer as ``tiltloop dashboard --html``), with the old command line (``NAME``, ``--out DIR``,
``--url``, ``--json``); a clear error for an unknown campaign, nothing written."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import SECRET_TOKEN_FIELD
from optimizer.cli import main
from storage import Storage


def embedded(html: str) -> dict[str, Any]:
    m = re.search(r"<script>window\.TL_EMBED = (\{.*?\});</script>", html, re.DOTALL)
    assert m is not None, "no embedded data"
    return json.loads(m.group(1))


def test_report_writes_the_dashboard_views_into_one_file(
        db_url: str, storage: Storage, campaigns: dict[str, list[str]], tmp_path: Path,
        new_page: Callable[[], Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    capsys.readouterr()
    assert main(["report", "vec", "--url", db_url, "--out", str(out), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    page_path = out / "report.html"
    assert answer == {"html": str(page_path)}
    html = page_path.read_text(encoding="utf-8")
    assert "/static/" not in html and 'src="http' not in html
    assert SECRET_TOKEN_FIELD not in html and "hunter2" not in html
    data = embedded(html)
    assert data["name"] == "vec" and len(data["bundle"]["points"]["key"]) == 16

    # `tiltloop dashboard --html` is the same renderer: the same data (but the time stamp)
    other = tmp_path / "dash.html"
    assert main(["dashboard", "--url", db_url, "--html", "vec", "--out", str(other)]) == 0
    again = embedded(other.read_text(encoding="utf-8"))
    assert again["bundle"] == data["bundle"]

    page = new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(page_path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    for card in ("best", "rounds", "gap", "traces", "gallery", "table", "failures", "config"):
        assert page.locator(f"#card-{card} .body").inner_text() != "" or \
            page.locator(f"#card-{card} .js-plotly-plot").count() > 0, card
    assert page.locator("#top-table tbody tr").count() == 11
    assert page.locator("#failures-table tbody tr").count() == 1
    assert page.locator("#stat-oracle .value").inner_text() == "http"
    assert page.locator("#stat-prior .value").inner_text().endswith("tiny-mlp")
    assert [u for u in requests if not u.startswith("file:")] == []
    page.screenshot(path=str(tmp_path / "11-report-cli.png"), full_page=True)


def test_report_of_an_unknown_campaign_is_a_clear_error(
        db_url: str, storage: Storage, campaigns: dict[str, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["report", "ghost", "--url", db_url, "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tiltloop report: ") and "ghost" in err
    assert not (tmp_path / "g").exists()
