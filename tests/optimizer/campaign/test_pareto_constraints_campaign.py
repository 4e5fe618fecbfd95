"""A Pareto campaign with ``[[constraints]]`` end to end: ParEGO-tilted SMC whose target carries
the probability of feasibility, constrained qLogNEHVI screening, against the lab simulator over
HTTP where half the prior's mass (and the best part of the unconstrained front) is infeasible.
After round 1 most queries are feasible, and ``tiltloop status``, export and the dashboard show a
front of feasible results only, with the hypervolume and inferred reference point of the
feasible results (checked against an independent computation)."""
from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from campaign_oracles import TwoBowlsTox
from pareto_reference import brute_front, staircase_hv

from optimizer.campaign.config_constraints import is_feasible
from optimizer.campaign.driver import campaign_status
from optimizer.campaign.export import export_campaign, stored_objectives
from optimizer.campaign.service import load_campaign_config, run_campaign
from optimizer.service.dashboard.data import campaign_bundle
from optimizer.surrogate.pareto import reference_point
from oracles.labsim import LabSimulator
from storage import Storage


pytestmark = pytest.mark.slow  # a whole campaign on Ray

OBJECTIVES = [{"name": "near", "direction": "maximize"}, {"name": "cost", "direction": "minimize"}]
CONSTRAINT = {"name": "tox", "op": "<=", "bound": 0.0}


@pytest.fixture()
def lab() -> Iterator[LabSimulator]:
    sim = LabSimulator(TwoBowlsTox(seed=0)).start()
    try:
        yield sim
    finally:
        sim.close()


def test_constrained_pareto_campaign(ray_session: str, lab: LabSimulator, tmp_path: Path,
                                     make_config) -> None:
    url = f"sqlite:///{tmp_path / 'mo-con.db'}"
    cfg = make_config("moc", "gmm-toy", lab.url, url, objectives=OBJECTIVES,
                      constraints=[CONSTRAINT],
                      surrogate={"scalarization": "parego", "fit_maxiter": 60},
                      sampler={"alpha": 0.1, "num_steps": 8},
                      workers={"count": 2, "particles_per_worker": 64},
                      budget={"q": 4, "max_in_flight": 4, "total": 16, "poll_interval_s": 0.05})
    assert cfg.surrogate.acquisition == "qlognehvi" and cfg.surrogate_for_loop().num_constraints == 1
    status = run_campaign(cfg)
    assert status.status == "completed" and status.results == 16
    with Storage.open(url) as st:
        assert load_campaign_config(st, "moc").constraints == cfg.constraints
        rounds = st.list_rounds("moc")
        assert [bool((r.summary or {}).get("tilted")) for r in rounds] == [False, True, True, True]
        for r in rounds[1:]:
            assert len((r.summary or {})["parego_weights"]) == cfg.workers.num_chunks
            # objectives and the constraint slack each had a GP
            assert (r.surrogate_state or {})["fit_ok"] == [True, True, True]
        done = sorted(st.load_history("moc", with_design=False).completed,
                      key=lambda q: q.round_index)
        full = campaign_status(st, "moc", load_campaign_config(st, "moc"), with_diagnostics=True)
        export_campaign(st, "moc", tmp_path / "out.csv", format="csv",
                        objectives=stored_objectives(st, "moc"))
        bundle = campaign_bundle(st, "moc")
    feasible = {q.key: bool(is_feasible(q.values, cfg.constraints)) for q in done}
    late = [feasible[q.key] for q in done if q.round_index >= 2]
    assert len(late) == 8 and sum(late) >= 6, [(q.round_index, q.values) for q in done]
    ok = [q for q in done if feasible[q.key]]
    V = np.array([[(q.values or {})["near"], -(q.values or {})["cost"]] for q in ok])
    front = {q.key for q, on in zip(ok, brute_front(V), strict=True) if on}
    ref = reference_point(V).numpy()  # inferred from the feasible results only
    assert full.diagnostics is not None
    p = full.diagnostics["pareto"]
    assert set(p["front"]) == front and all(feasible[k] for k in p["front"])
    assert p["results"] == len(ok) and p["reference_given"] == [False, False]
    assert p["reference"] == pytest.approx([ref[0], -ref[1]])
    assert p["hypervolume"] == pytest.approx(staircase_hv(V, ref), rel=1e-9) and p["hypervolume"] > 0
    # an infeasible result would be on the front of all results: the filter matters here
    V_all = np.array([[(q.values or {})["near"], -(q.values or {})["cost"]] for q in done])
    assert {q.key for q, on in zip(done, brute_front(V_all), strict=True) if on} != front
    by_round = [r["hypervolume"] for r in p["by_round"]]
    assert by_round == sorted(by_round) and by_round[-1] > by_round[0]
    text = full.line()
    assert f"{len(front)} of {len(ok)} results" in text
    assert f"constraints: {len(ok)} feasible, {16 - len(ok)} infeasible" in text
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["key"] for r in rows if r["pareto"] == "True"} == front
    assert all(r["feasible"] == str(feasible[r["key"]]) for r in rows)
    assert set(bundle["pareto"]["front"]) == front
    assert bundle["pareto"]["hypervolume"]["value"][-1] == pytest.approx(p["hypervolume"])
