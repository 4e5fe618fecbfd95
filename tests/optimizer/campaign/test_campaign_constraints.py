"""``[[constraints]]``: config errors naming the field, the stored config's round trip, the
preflight against what the lab reports, the training columns, and a whole campaign on the
bundled ``gmm-toy`` prior against the lab simulator over HTTP whose constraint excludes half the
prior's mass (and the unconstrained optimum): after round 2 the queries are feasible, and
``status`` and export show feasibility."""
from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_constraints import ConstraintConfig, is_feasible
from optimizer.campaign.config_io import dump_toml, load_config, parse_config
from optimizer.campaign.driver import campaign_status
from optimizer.campaign.export import export_campaign, stored_objectives
from optimizer.campaign.resume import resume_campaign
from optimizer.campaign.rounds import training_data
from optimizer.campaign.service import load_campaign_config, preflight, run_campaign
from optimizer.errors import CampaignConfigError, PreflightError
from oracles.labsim import LabSimulator
from storage import History, QueryRecord, Storage

from campaign_oracles import TwoBumps

BASE: dict[str, Any] = {
    "name": "c1", "prior": {"name": "gmm-toy"},
    "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9"},
    "objectives": [{"name": "y"}],
    "constraints": [{"name": "tox", "op": "<=", "bound": 0.2}],
}


def _errors(**changes: Any) -> str:
    with pytest.raises(CampaignConfigError) as err:
        parse_config({**BASE, **changes})
    return str(err.value)


def test_config_errors_name_the_field() -> None:
    assert "field `constraints.0.op`" in _errors(constraints=[{"name": "tox", "op": "<", "bound": 1}])
    assert "field `constraints.0.bound`" in _errors(constraints=[{"name": "tox", "op": "<="}])
    assert "field `constraints.0.bound`" in _errors(
        constraints=[{"name": "tox", "op": "<=", "bound": math.nan}])
    twice = _errors(constraints=[{"name": "tox", "op": "<=", "bound": 1},
                                 {"name": "tox", "op": ">=", "bound": 0}])
    assert "field `constraints.1.name`" in twice and "given twice" in twice
    objective = _errors(constraints=[{"name": "y", "op": "<=", "bound": 1}])
    assert "field `constraints.0.name`" in objective and "is an objective" in objective
    # the oracle's output list is given and lacks the constraint output
    missing = _errors(oracle={"kind": "http", "base_url": "http://127.0.0.1:9", "objectives": ["y"]})
    assert "field `constraints.0.name`" in missing and "'tox'" in missing
    # a simulated oracle reports one objective
    assert "field `constraints.0.name`" in _errors(oracle={"kind": "manifold"},
                                                   objectives=[{"name": "value"}])
    assert "field `constraints.0.sign`" in _errors(
        constraints=[{"name": "tox", "op": "<=", "bound": 1, "sign": 1}])
    assert "field `surrogate.num_constraints`" in _errors(surrogate={"num_constraints": 1})


def test_config_round_trips_and_fills_the_oracle_outputs(tmp_path: Path) -> None:
    cfg = parse_config(BASE)
    assert cfg.oracle.objectives == ("y", "tox")  # type: ignore[attr-defined]
    assert cfg.constraints == [ConstraintConfig(name="tox", op="<=", bound=0.2)]
    assert cfg.surrogate_for_loop().num_constraints == 1
    assert "num_constraints" not in cfg.to_json_dict()["surrogate"]
    assert CampaignConfig.model_validate(cfg.to_json_dict()) == cfg  # the stored snapshot
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert "[[constraints]]" in path.read_text() and load_config(path) == cfg
    assert parse_config({k: v for k, v in BASE.items() if k != "constraints"}).constraints == []


def test_training_data_appends_signed_slack_columns() -> None:
    cfg = parse_config({**BASE, "objectives": [{"name": "y", "direction": "minimize"}],
                        "constraints": [{"name": "tox", "op": "<=", "bound": 0.2},
                                        {"name": "yield", "op": ">=", "bound": 0.5}]})
    now = datetime.now(timezone.utc)

    def rec(key: str, values: dict[str, float] | None) -> QueryRecord:
        return QueryRecord(key=key, campaign="c1", round_index=0, candidate_index=0,
                           oracle_name="lab", status="succeeded", job_id=None, attempts=1,
                           values=values, noise=None, error=None, lease_owner=None,
                           lease_expires_at=None, created_at=now, updated_at=now,
                           dispatched_at=now, finished_at=now, design=np.zeros(2))

    history = History(campaign="c1", completed=(
        rec("a", {"y": 2.0, "tox": 0.1, "yield": 0.9}),
        rec("b", {"y": 1.0, "tox": 0.5, "yield": 0.2}),
        rec("c", {"y": 1.0, "tox": 0.5})))  # an output missing: left out of training
    data = training_data(history, cfg)
    assert np.allclose(data.Y, [[-2.0, -0.1, -0.4], [-1.0, 0.3, 0.3]])  # feasible iff c <= 0
    feasible = [is_feasible(q.values, cfg.constraints) for q in history.completed]
    assert feasible == [True, False, False]


def test_preflight_names_a_constraint_the_lab_does_not_report(tiny_prior_path: str, lab,
                                                              make_config, tmp_path: Path) -> None:
    cfg = make_config("pre", tiny_prior_path, lab.url, f"sqlite:///{tmp_path / 'p.db'}",
                      constraints=[{"name": "c", "op": "<=", "bound": 0.0}])
    with pytest.raises(PreflightError, match="field `constraints`.*needs \\['c'\\]"):
        preflight(cfg)


@pytest.mark.slow
def test_constrained_campaign_queries_feasible_designs(ray_session: str, make_config,
                                                       tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'constrained.db'}"
    name = "constrained"
    with LabSimulator(TwoBumps(seed=0)).start() as lab:
        cfg = make_config(name, "gmm-toy", lab.url, url,
                          constraints=[{"name": "c", "op": "<=", "bound": 0.0}],
                          sampler={"alpha": 0.1, "num_steps": 8},
                          workers={"count": 2, "particles_per_worker": 64},
                          budget={"q": 4, "max_in_flight": 4, "total": 12, "poll_interval_s": 0.05})
        assert run_campaign(cfg).status == "completed"
        with Storage.open(url) as st:
            assert load_campaign_config(st, name).constraints == cfg.constraints
        # `tiltloop resume NAME --budget 16`: the stored config (its constraint) drives round 3
        final = resume_campaign(name, url, budget=16)
        assert final.status == "completed" and final.results == 16
    with Storage.open(url) as st:
        done = st.load_history(name).completed
        feasible = {q.key: bool(is_feasible(q.values, cfg.constraints)) for q in done}
        late = [feasible[q.key] for q in done if q.round_index >= 2]
        assert len(late) == 8 and sum(late) >= 7, [(q.round_index, q.values) for q in done]
        status = campaign_status(st, name, cfg, with_diagnostics=True)
        n_ok = sum(feasible.values())
        assert status.extra["feasibility"] == {"feasible": n_ok, "infeasible": 16 - n_ok}
        assert status.best_key is not None and feasible[status.best_key]
        assert status.best == max(q.values["y"] for q in done if feasible[q.key])  # type: ignore[index]
        text = status.line()
        assert f"constraints: {n_ok} feasible, {16 - n_ok} infeasible" in text
        assert "feasible results per round: r0 " in text
        out = io.StringIO()
        export_campaign(st, name, None, format="csv", objectives=stored_objectives(st, name),
                        stream=out, top=3)
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert {"y", "c", "noise_c", "feasible"} <= set(rows[0])
        assert rows[0]["key"] == status.best_key and rows[0]["feasible"] == "True"
        assert all(r["feasible"] == str(feasible[r["key"]]) for r in rows)
        # the surrogate of a tilted round was fitted with the constraint column
        fit = st.load_round(name, 3).surrogate_state
        assert fit is not None and fit["fit_ok"] == [True, True]


def test_a_result_without_the_constraint_output_fails(tmp_path: Path, lab) -> None:
    """The dispatcher records the constraint outputs with the objectives: a lab result without
    one fails with the reason, like a result missing an objective (the Bowl lab reports only y)."""
    from optimizer.campaign.config_constraints import recorded_outputs
    from optimizer.campaign.dispatch import Dispatcher
    from oracles.factory import build_oracle
    from storage import NewCandidate
    from storage.migrate import upgrade

    cfg = parse_config({**BASE, "oracle": {"kind": "http", "base_url": lab.url},
                        "constraints": [{"name": "c", "op": "<=", "bound": 0.0}]})
    assert recorded_outputs(cfg) == ["y", "c"]
    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    with Storage.open(url) as st:
        st.create_campaign("d", {"note": "dispatcher test"})
        st.record_round("d", 0, alpha=1.0, candidates=[NewCandidate(np.array([0.0, 0.0]))],
                        selected=[0], oracle_name="lab")
        oracle = build_oracle("http", {"base_url": lab.url, "objectives": ["y"], "timeout_s": 5.0})
        d = Dispatcher(st, "d", oracle, objectives=recorded_outputs(cfg), limit=1)
        assert d.dispatch() == 1
        for _ in range(100):
            d.poll()
            if st.query_counts("d")["failed"]:
                break
        d.close()
        (failed,) = st.list_queries("d", statuses=("failed",))
        assert "['c']" in (failed.error or "") and failed.values is None
