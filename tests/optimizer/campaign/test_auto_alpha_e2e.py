"""End to end on SQLite and Postgres: a campaign with ``alpha = "auto"`` on Ray records, per
tilted round, the chosen α, its estimated KL and why; every round stores its sampler
diagnostics; ``tiltloop status`` (text and --json) and the dashboard bundle show them."""
from __future__ import annotations

import json
import math

import pytest

from optimizer.campaign.service import run_campaign
from optimizer.cli import main
from optimizer.service.dashboard.data import campaign_bundle
from storage import Storage

pytestmark = pytest.mark.slow  # a whole campaign on Ray: ~40 s on 2 cores


def test_auto_alpha_campaign_records_alpha_and_kl_per_round(
        ray_session: str, tiny_prior_path: str, lab, db_url: str, make_config,
        capsys: pytest.CaptureFixture[str]) -> None:
    name = "auto-alpha"
    budget = 0.5
    cfg = make_config(name, tiny_prior_path, lab.url, db_url,
                      sampler={"alpha": "auto", "kl_budget": budget, "alpha_min": 1e-3,
                               "alpha_max": 1e3},
                      budget={"q": 4, "max_in_flight": 4, "total": 16, "poll_interval_s": 0.05})
    status = run_campaign(cfg)
    assert status.status == "completed" and status.results == 16
    with Storage.open(db_url) as st:
        rounds = st.list_rounds(name)
        plain = st.list_candidates(name, 0)
    assert len(rounds) == 4 and [bool(r.summary["tilted"]) for r in rounds] == [False, True, True, True]
    assert "alpha_auto" not in rounds[0].summary
    assert rounds[0].summary["diagnostics"]["kl"] == 0.0
    for r in rounds:
        d = r.summary["diagnostics"]
        assert 0 < d["min_ess_fraction"] <= 1 and d["resampling_events"] >= 0
        assert d["unique_ancestors"] == r.unique_ancestors
        assert 1 <= d["batch_families"] <= 4 and d["batch_diversity"] > 0
    for r in rounds[1:]:
        a = r.summary["alpha_auto"]
        assert r.alpha == pytest.approx(a["alpha"]) and 1e-3 <= r.alpha <= 1e3
        assert a["prior_samples"] == len(plain) and "round-0 prior samples" in a["reason"]
        if a["reason"].startswith("budget met") and not a["brake"]:
            assert a["kl"] == pytest.approx(budget, rel=1e-3)
        assert r.summary["diagnostics"]["kl"] is not None and math.isfinite(r.summary["diagnostics"]["kl"])
    assert any(r.summary["alpha_auto"]["reason"].startswith("budget met") for r in rounds[1:])
    # the gap of a completed tilted round feeds the brake from round 3 on (max_in_flight = q)
    assert rounds[3].summary["alpha_auto"]["gap"] is not None

    assert main(["status", name, "--url", db_url, "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    diag = js["diagnostics"]
    assert [row["alpha_auto"] for row in diag["rounds"]] == [False, True, True, True]
    assert diag["judged_batches"] == 3 and 0 <= diag["wasted_batches"] <= 3
    assert main(["status", name, "--url", db_url]) == 0
    text = capsys.readouterr().out
    assert "round 3: α=" in text and "(auto" in text and "KL≈" in text and "batches: " in text
    assert len(text.strip().splitlines()) <= 4  # short

    with Storage.open(db_url) as st:
        bundle = campaign_bundle(st, name)
    assert bundle["batches"]["judged_batches"] == 3
    assert bundle["rounds"][2]["diagnostics"]["alpha_auto"] is True
    assert bundle["rounds"][2]["diagnostics"]["kl_budget"] == budget
