"""The report draws real PNGs and one self-contained HTML page from plain arrays."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from optimizer.report.html import ReportData, write_report
from optimizer.report.plots import best_so_far


def _data(designs: np.ndarray | None) -> ReportData:
    rng = np.random.default_rng(0)
    n = 12
    values = rng.normal(size=n)
    values[3] = np.nan  # a failed query
    mean = values + 0.1
    mean[:4] = np.nan  # round 0 has no surrogate
    return ReportData(
        campaign="c<1>", objective="y", direction="minimize", values=values,
        rounds=np.repeat(np.arange(3), 4), statuses=("succeeded",) * n,
        surrogate_mean=mean, surrogate_std=np.full(n, 0.2),
        ess_traces=[(1, np.linspace(1, 0.4, 10)), (2, np.linspace(1, 0.6, 10))],
        designs=designs, summary={"queries": n, "best": float(np.nanmin(values))},
    )


def test_best_so_far_respects_direction_and_failures() -> None:
    v = np.array([np.nan, 2.0, 1.0, np.nan, 3.0])
    assert np.isnan(best_so_far(v, "maximize")[0])
    assert best_so_far(v, "maximize")[1:].tolist() == [2.0, 2.0, 2.0, 3.0]
    assert best_so_far(v, "minimize")[1:].tolist() == [2.0, 1.0, 1.0, 1.0]


def test_report_with_image_designs(tmp_path: Path) -> None:
    paths = write_report(_data(np.random.default_rng(1).random((12, 8, 8))), tmp_path)
    names = sorted(p.name for p in paths.images)
    assert names == ["designs.png", "ess.png", "progress.png", "rounds.png", "surrogate_vs_oracle.png"]
    for p in paths.images:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(embedded) == 5
    assert base64.b64decode(embedded[0]) == paths.images[0].read_bytes()
    assert "c&lt;1&gt;" in page and "<script" not in page and "src=\"http" not in page


def test_report_for_vector_designs_has_no_grid(tmp_path: Path) -> None:
    paths = write_report(_data(np.zeros((12, 10))), tmp_path)
    assert "designs.png" not in {p.name for p in paths.images}
