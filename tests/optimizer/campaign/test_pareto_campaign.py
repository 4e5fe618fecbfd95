"""A two-objective (Pareto) campaign end to end: ParEGO-tilted SMC rounds and qLogNEHVI screening
against the lab simulator over HTTP (two conflicting objectives, one minimized), then `tiltloop
status`, export and the dashboard bundle show the Pareto front and the hypervolume, checked
against an independent computation; and the config errors of a Pareto campaign."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from campaign_oracles import TwoBowls
from pareto_reference import brute_front, staircase_hv

from optimizer.campaign.driver import campaign_status
from optimizer.campaign.export import export_campaign, stored_objectives
from optimizer.campaign.service import load_campaign_config, run_campaign
from optimizer.errors import CampaignConfigError
from optimizer.service.dashboard.data import campaign_bundle
from optimizer.surrogate.pareto import parego_weights
from oracles.labsim import LabSimulator
from storage import Storage

pytestmark = pytest.mark.slow  # a whole campaign on Ray

OBJECTIVES = [{"name": "near", "direction": "maximize", "reference": -12.0},
              {"name": "cost", "direction": "minimize", "reference": 12.0}]


@pytest.fixture()
def two_bowls() -> Iterator[LabSimulator]:
    sim = LabSimulator(TwoBowls(seed=0)).start()
    try:
        yield sim
    finally:
        sim.close()


def test_two_objective_campaign_status_export_dashboard(
        ray_session: str, tiny_prior_path: str, two_bowls: LabSimulator, tmp_path: Path,
        make_config) -> None:
    url = f"sqlite:///{tmp_path / 'pareto.db'}"
    cfg = make_config("pareto", tiny_prior_path, two_bowls.url, url, objectives=OBJECTIVES,
                      surrogate={"scalarization": "parego", "fit_maxiter": 60},
                      budget={"q": 4, "max_in_flight": 4, "total": 16, "poll_interval_s": 0.05})
    assert cfg.surrogate.acquisition == "qlognehvi"  # what a Pareto campaign screens with
    status = run_campaign(cfg)
    assert status.status == "completed" and status.results == 16
    with Storage.open(url) as st:
        rounds = st.list_rounds("pareto")
        summaries = [r.summary or {} for r in rounds]
        assert [bool(s.get("tilted")) for s in summaries] == [False, True, True, True]
        for r, summary in zip(rounds[1:], summaries[1:], strict=True):
            # one weight vector per SMC chunk, reproducible from (seed, round, chunk), the
            # simplex draw scaled to a largest weight of 1
            ws = summary["parego_weights"]
            draws = [parego_weights(cfg.seed, r.index, c, 2) for c in range(cfg.workers.num_chunks)]
            assert ws == [[x / max(w) for x in w] for w in draws]
            assert all(max(w) == 1.0 for w in ws)
            picked = [c for c in st.list_candidates("pareto", r.index) if c.selected]
            assert len(picked) == 4 and all(c.acquisition is not None for c in picked)
        assert "parego_weights" not in summaries[0]
        full = campaign_status(st, "pareto", load_campaign_config(st, "pareto"),
                               with_diagnostics=True)
        history = st.load_history("pareto", with_design=False)
        keys = [q.key for q in history.completed]
        V = np.array([[(q.values or {})["near"], -(q.values or {})["cost"]]
                      for q in history.completed])
        export_campaign(st, "pareto", tmp_path / "out.csv", format="csv",
                        objectives=stored_objectives(st, "pareto"))
        bundle = campaign_bundle(st, "pareto")
    front = {k for k, on in zip(keys, brute_front(V), strict=True) if on}
    ref = np.array([-12.0, -12.0])
    hv = staircase_hv(V, ref)
    assert full.diagnostics is not None
    p = full.diagnostics["pareto"]
    assert set(p["front"]) == front and p["results"] == 16
    assert p["reference"] == [-12.0, 12.0] and p["reference_given"] == [True, True]
    assert p["hypervolume"] == pytest.approx(hv, rel=1e-9)
    by_round = [r["hypervolume"] for r in p["by_round"]]
    assert [r["round"] for r in p["by_round"]] == [0, 1, 2, 3]
    assert by_round == sorted(by_round) and by_round[-1] == pytest.approx(hv)
    # the loop improved the front the plain-prior round found
    assert by_round[-1] > by_round[0]
    text = full.line()
    assert "Pareto front (near × cost)" in text and f"{len(front)} of 16 results" in text
    assert f"hypervolume {hv:.6g}" in text and "reference near=-12, cost=12" in text
    assert "hypervolume by round: r0" in text
    assert json.loads(json.dumps(full.to_json(), default=str))["diagnostics"]["pareto"]["front"]
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["key"] for r in rows if r["pareto"] == "True"} == front
    assert all(r["pareto"] in ("True", "False") for r in rows) and "near" in rows[0]
    pr = bundle["pareto"]
    assert set(pr["front"]) == front
    assert pr["hypervolume"]["reference"] == [-12.0, 12.0]
    assert pr["hypervolume"]["value"][-1] == pytest.approx(hv)


@pytest.mark.parametrize(("objectives", "surrogate", "match"), [
    ([{"name": "y"}], {"acquisition": "qlognehvi"}, r"qlognehvi.*at least two"),
    ([{"name": "y"}], {"scalarization": "parego"}, r"parego.*at least two"),
    ([{"name": "y", "reference": 1.0}], {}, r"objectives\.0\.reference.*at least two"),
    ([{"name": "y"}, {"name": "cost"}], {"scalarization": "parego", "weights": [1.0, 2.0]},
     r"surrogate\.weights.*ParEGO draws its own"),
    ([{"name": "y", "reference": "low"}, {"name": "cost"}], {}, r"reference"),
    ([{"name": "y", "reference": float("nan")}, {"name": "cost"}], {}, r"reference"),
    ([{"name": "y"}, {"name": "cost"}], {"reference_point": [1.0, 2.0]},
     r"surrogate.reference_point.*set by the loop"),
    ([{"name": "y"}, {"name": "cost"}], {"acquisition": "qlognehvi", "scalarization": "pareto"},
     r"scalarization"),
])
def test_pareto_config_errors(objectives, surrogate, match, make_config, tmp_path: Path) -> None:
    with pytest.raises(CampaignConfigError, match=match):
        make_config("bad", "gmm-toy", "http://127.0.0.1:9", f"sqlite:///{tmp_path / 'x.db'}",
                    objectives=objectives, surrogate=surrogate)


def test_parego_defaults_to_qlognehvi_and_keeps_an_explicit_choice(make_config,
                                                                   tmp_path: Path) -> None:
    objs = [{"name": "y"}, {"name": "cost", "direction": "minimize", "reference": 3.0}]
    cfg = make_config("ok", "gmm-toy", "http://127.0.0.1:9", f"sqlite:///{tmp_path / 'x.db'}",
                      objectives=objs, surrogate={"scalarization": "parego"})
    assert cfg.surrogate.acquisition == "qlognehvi"
    # the loop's surrogate gets the references signed (the loop maximizes)
    assert cfg.surrogate_for_loop().reference_point == (None, -3.0)
    assert "reference_point" not in cfg.to_json_dict()["surrogate"]
    cfg2 = make_config("ok", "gmm-toy", "http://127.0.0.1:9", f"sqlite:///{tmp_path / 'x.db'}",
                       objectives=objs, surrogate={"scalarization": "parego",
                                                   "acquisition": "qlognei"})
    assert cfg2.surrogate.acquisition == "qlognei"
