"""The report's top-designs table (with SVG thumbnails for image designs) and failure summary:
from plain arrays, and end to end from a campaign stored with the Storage API."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.campaign.failures import group_failures
from optimizer.report.build import build_report
from optimizer.report.html import ReportData, write_report
from optimizer.report.tables import thumbnail_svg, top_rows
from storage import NewCandidate, Storage, upgrade

REASON = "HTTP 422: design must have shape [16], got [2]"


def _keys_in(table: str) -> list[str]:
    return re.findall(r"<tr><td>\d+</td><td>([^<]+)</td>", table)


def test_top_rows_direction_and_failures() -> None:
    v = np.array([2.0, np.nan, 5.0, -1.0, 5.0])
    assert top_rows(v, "maximize", 3).tolist() == [2, 4, 0]  # ties: earliest first
    assert top_rows(v, "minimize", 2).tolist() == [3, 0]
    assert top_rows(np.full(3, np.nan), "maximize").tolist() == []


def test_thumbnail_pixels() -> None:
    img = np.zeros((8, 8))
    img[2, 5] = 3.0  # the only bright pixel: white at x=5, y=2
    svg = thumbnail_svg(img)
    assert svg.count("<rect") == 64 and 'viewBox="0 0 8 8"' in svg
    assert '<rect x="5" y="2" width="1" height="1" fill="#ffffff"/>' in svg
    assert svg.count('fill="#000000"') == 63
    assert thumbnail_svg(np.zeros((1, 8, 8))).count("<rect") == 64  # C x H x W
    assert thumbnail_svg(np.zeros((100, 100))) == ""  # too large to draw per pixel


def _data(designs: np.ndarray, **over: Any) -> ReportData:
    n = 12
    values = np.arange(n, dtype=float)
    values[[3, 7]] = np.nan
    fields: dict[str, Any] = dict(
        campaign="c", objective="y", direction="maximize", values=values,
        rounds=np.repeat(np.arange(3), 4), statuses=("succeeded",) * n,
        surrogate_mean=values + 0.5, surrogate_std=np.full(n, 0.25), designs=designs,
        keys=tuple(f"c:{i // 4}:{i % 4}" for i in range(n)),
        failures=tuple(group_failures([("c:0:3", REASON), ("c:1:3", REASON)])))
    fields.update(over)
    return ReportData(**fields)


def test_report_page_has_top_designs_and_failures(tmp_path: Path) -> None:
    paths = write_report(_data(np.random.default_rng(0).random((12, 8, 8))), tmp_path)
    page = paths.html.read_text()
    top = page.split("<table class='top'>", 1)[1].split("</table>", 1)[0]
    assert _keys_in(top) == ["c:2:3", "c:2:2", "c:2:1", "c:2:0", "c:1:2", "c:1:1", "c:1:0",
                             "c:0:2", "c:0:1", "c:0:0"]
    assert "<td>11</td><td>11.5 ± 0.25</td>" in top
    assert top.count("<svg") == 10
    assert "Failures by cause (2)" in page and f"<td>2×</td><td>{REASON}</td>" in page
    # the plots are still the only base64 images; nothing external
    assert page.count("data:image/png;base64,") == 5
    assert "<script" not in page and 'src="http' not in page


def test_vector_designs_no_thumbnails_and_minimize(tmp_path: Path) -> None:
    data = _data(np.zeros((12, 4)), direction="minimize", failures=())
    page = write_report(data, tmp_path).html.read_text()
    top = page.split("<table class='top'>", 1)[1].split("</table>", 1)[0]
    assert _keys_in(top)[:3] == ["c:0:0", "c:0:1", "c:0:2"] and "<svg" not in top
    assert "no failed queries" in page


def test_report_from_storage(db_url: str, tmp_path: Path, make_config: Any) -> None:
    config = make_config("rep", "gmm-toy", "http://127.0.0.1:9", db_url,
                         objectives=[{"name": "y", "direction": "minimize"}])
    upgrade(db_url)
    with Storage.open(db_url) as st:
        st.create_campaign("rep", config.to_json_dict())
        cands = [NewCandidate(design=np.full((8, 8), float(i)), surrogate_mean=-float(i),
                              surrogate_std=0.5) for i in range(5)]
        keys = st.record_round("rep", 0, alpha=0.5, candidates=cands, selected=[0, 1, 2, 3],
                               oracle_name="lab").query_keys
        for key, y in zip(keys[:2], (4.0, 2.0)):
            st.transition_query(key, expected="pending", new="dispatched")
            st.transition_query(key, expected="dispatched", new="succeeded", values={"y": y})
        st.transition_query(keys[2], expected="pending", new="failed",
                            error="sim.py exited with code 1 | stderr tail: pid 4242")
        st.transition_query(keys[3], expected="pending", new="failed",
                            error="sim.py exited with code 1 | stderr tail: pid 77")
        page = build_report(st, "rep", tmp_path).html.read_text()
    top = page.split("<table class='top'>", 1)[1].split("</table>", 1)[0]
    # minimize: 2.0 (rep:0:1) before 4.0 (rep:0:0); the stored mean -i is shown as +i
    assert _keys_in(top) == ["rep:0:1", "rep:0:0"]
    assert "<td>2</td><td>1 ± 0.5</td>" in top and top.count("<svg") == 2
    assert "<td>2×</td><td>sim.py exited with code 1</td><td title=" in page
