"""Cheap evaluators with outcome constraints, with a Pareto campaign, and with ``alpha = "auto"``,
end to end: an expensive lab and a cheap one (two lab simulators over real HTTP, the cheap one
biased and noisy) on Ray and SQLite. Each lab evaluates each key exactly once; with constraints
the multi-task picks (UCB x PoF for the cheap oracle, constrained qLogNEI for the expensive one)
steer both labs' queries to the feasible side and status/export show feasibility; with two
objectives the expensive pick is qLogNEHVI over the front and the cheap one the round's ParEGO
scalarization; with both, constrained qLogNEHVI keeps the front feasible; with
``alpha = "auto"`` the over-optimization gap is computed from the multi-task
GP's predictions stored with the picked candidates."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from optimizer.campaign.config_constraints import is_feasible
from optimizer.campaign.driver import campaign_status
from optimizer.campaign.export import export_campaign, stored_objectives
from optimizer.campaign.fidelity import child_name
from optimizer.campaign.pareto_round import chunk_weights
from optimizer.campaign.service import load_campaign_config, run_campaign
from oracles.labsim import LabSimulator
from storage import Storage

from campaign_oracles import Bowl, TwoBowls, TwoBowlsTox, TwoBumps

pytestmark = pytest.mark.slow  # whole campaigns on Ray


class CheapTwoBumps(TwoBumps):
    """TwoBumps plus a smooth bias on ``y`` and a slightly pessimistic constraint (`c + 0.1`)."""

    def score(self, design: np.ndarray) -> dict[str, float]:
        out = super().score(design)
        return {"y": out["y"] + 0.05 * float(np.sin(design[1])), "c": out["c"] + 0.1}


class CheapTwoBowls(TwoBowls):
    """TwoBowls with a smooth bias on each objective."""

    def score(self, design: np.ndarray) -> dict[str, float]:
        out = super().score(design)
        return {"near": out["near"] + 0.2 * float(np.sin(2 * design[0])),
                "cost": out["cost"] + 0.2 * float(np.cos(design[1]))}


class CheapTwoBowlsTox(TwoBowlsTox):
    """TwoBowlsTox with a smooth bias on each objective and a slightly pessimistic constraint."""

    def score(self, design: np.ndarray) -> dict[str, float]:
        out = super().score(design)
        return {"near": out["near"] + 0.2 * float(np.sin(2 * design[0])),
                "cost": out["cost"] + 0.2 * float(np.cos(design[1])), "tox": out["tox"] + 0.1}


class BiasedBowl(Bowl):
    def score(self, design: np.ndarray) -> dict[str, float]:
        return {"y": super().score(design)["y"] + 0.3 * float(np.sin(2.0 * design[0]))}


def _cheap(url: str, **extra: Any) -> dict[str, Any]:
    return {"oracles": [{"name": "sim", "cost": 0.05, "per_round": 8, "budget": 40, "wait_s": 60.0,
                         "oracle": {"kind": "http", "base_url": url, "timeout_s": 10.0}, **extra}]}


def _exactly_once(st: Storage, name: str, lab: LabSimulator, cheap: LabSimulator) -> None:
    """Each lab evaluated exactly the keys stored as its campaign's results, each once."""
    child = child_name(name, "sim")
    main_keys = {q.key for q in st.list_queries(name, statuses=("succeeded",))}
    cheap_keys = {q.key for q in st.list_queries(child, statuses=("succeeded",))}
    assert main_keys and cheap_keys and not main_keys & cheap_keys
    assert set(lab.store.evaluations) == main_keys and max(lab.store.evaluations.values()) == 1
    assert set(cheap.store.evaluations) == cheap_keys and max(cheap.store.evaluations.values()) == 1


@dataclass
class _Run:
    """A finished campaign with a cheap oracle, read back (the labs closed)."""

    cfg: Any
    status: Any
    url: str
    rounds: list[Any]
    cheap_rounds: list[Any]
    done: list[Any]
    cheap_done: list[Any]
    lab_keys: set[str]


def _run(make_config: Any, tmp_path: Any, name: str, prior: str, lab_oracle: Any,
         cheap_oracle: Any, *, per_round: int = 8, **sections: Any) -> _Run:
    """Run a 16-query campaign (q 4) against ``lab_oracle`` with ``cheap_oracle`` as ``sim``,
    check it completed and that each lab evaluated each key exactly once, read it back."""
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    with LabSimulator(lab_oracle).start() as lab, LabSimulator(cheap_oracle).start() as cheap:
        cfg = make_config(name, prior, lab.url, url,
                          budget={"q": 4, "max_in_flight": 4, "total": 16, "poll_interval_s": 0.05},
                          **_cheap(cheap.url, per_round=per_round), **sections)
        status = run_campaign(cfg)
        assert status.status == "completed" and status.results == 16, status
        with Storage.open(url) as st:
            _exactly_once(st, name, lab, cheap)
            child = child_name(name, "sim")
            return _Run(cfg=cfg, status=status, url=url, rounds=st.list_rounds(name),
                        cheap_rounds=st.list_rounds(child), done=st.load_history(name).completed,
                        cheap_done=st.load_history(child).completed,
                        lab_keys=set(lab.store.evaluations))


def test_constrained_campaign_with_a_cheap_oracle(ray_session: str, make_config, tmp_path) -> None:
    name = "mfc"
    run = _run(make_config, tmp_path, name, "gmm-toy", TwoBumps(seed=0),
               CheapTwoBumps(seed=1, noise_std=0.02),
               constraints=[{"name": "c", "op": "<=", "bound": 0.0}],
               sampler={"alpha": 0.1, "num_steps": 8},
               workers={"count": 2, "particles_per_worker": 64})
    cfg, status, rounds, cheap_rounds, done, cheap_done = (
        run.cfg, run.status, run.rounds, run.cheap_rounds, run.done, run.cheap_done)
    with Storage.open(run.url) as st:
        child = child_name(name, "sim")
        child_status = campaign_status(st, child, load_campaign_config(st, child))
        out = io.StringIO()
        export_campaign(st, name, None, format="csv", objectives=stored_objectives(st, name),
                        stream=out)
    picks = [(r.summary or {}).get("fidelity", {}).get("expensive_pick") for r in rounds]
    assert picks[0].startswith("campaign screening")
    assert picks[1:] == ["multi-task constrained qLogNEI"] * 3, picks
    how = [(r.summary or {}).get("pick") for r in cheap_rounds]
    assert how == ["space-filling"] + ["multi-task UCB x PoF"] * 3, how
    # the cheap oracle reported the constraint output, recorded with its results
    assert all("c" in (q.values or {}) for q in cheap_done)
    feasible = {q.key: bool(is_feasible(q.values, cfg.constraints)) for q in done}
    late = [feasible[q.key] for q in done if q.round_index >= 2]
    assert len(late) == 8 and sum(late) >= 7, [(q.round_index, q.values) for q in done]
    # the cheap pick favours likely-feasible designs (its own constraint, c + 0.1 <= 0, is
    # stricter still); round 0 is space-filling over the prior's modes (feasible ~ 1/3)
    cheap_ok = [bool(is_feasible({"c": q.values["c"] - 0.1}, cfg.constraints))  # type: ignore[index]
                for q in cheap_done if q.round_index >= 2]
    assert len(cheap_ok) == 16 and sum(cheap_ok) >= 12, cheap_ok
    # status and export keep showing feasibility; the best is feasible
    n_ok = sum(feasible.values())
    assert status.extra["feasibility"] == {"feasible": n_ok, "infeasible": 16 - n_ok}
    assert status.best_key is not None and feasible[status.best_key]
    assert f"constraints: {n_ok} feasible" in status.line()
    assert child_status.extra["feasibility"]["feasible"] + \
        child_status.extra["feasibility"]["infeasible"] == len(cheap_done)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert all(r["feasible"] == str(feasible[r["key"]]) for r in rows)


OBJECTIVES = [{"name": "near", "direction": "maximize", "reference": -12.0},
              {"name": "cost", "direction": "minimize", "reference": 12.0}]


def test_pareto_campaign_with_a_cheap_oracle(ray_session: str, tiny_prior_path: str, make_config,
                                             tmp_path) -> None:
    run = _run(make_config, tmp_path, "mfp", tiny_prior_path, TwoBowls(seed=0),
               CheapTwoBowls(seed=1, noise_std=0.05), per_round=6, objectives=OBJECTIVES,
               surrogate={"scalarization": "parego", "fit_maxiter": 60})
    cfg, rounds, cheap_rounds, cheap_done = run.cfg, run.rounds, run.cheap_rounds, run.cheap_done
    with Storage.open(run.url) as st:
        full = campaign_status(st, "mfp", load_campaign_config(st, "mfp"), with_diagnostics=True)
    picks = [(r.summary or {}).get("fidelity", {}).get("expensive_pick") for r in rounds]
    assert picks[1:] == ["multi-task qLogNEHVI"] * 3, picks
    # the cheap pick: ParEGO UCB with the weights of the round's first SMC chunk
    assert [(r.summary or {}).get("pick") for r in cheap_rounds][1:] == ["multi-task ParEGO UCB"] * 3
    for r in cheap_rounds[1:]:
        assert tuple((r.summary or {})["parego_weights"]) == chunk_weights(cfg, r.index)[0]
    assert all({"near", "cost"} <= set(q.values or {}) for q in cheap_done)
    # the front improves on the plain-prior round's, and holds only expensive results
    p = full.diagnostics["pareto"]  # type: ignore[index]
    by_round = [r["hypervolume"] for r in p["by_round"]]
    assert by_round[-1] > by_round[0] and p["results"] == 16
    assert set(p["front"]) <= run.lab_keys


def test_constrained_pareto_campaign_with_a_cheap_oracle(ray_session: str, make_config,
                                                         tmp_path) -> None:
    """All three together: one multi-task GP per objective and per constraint; the expensive
    pick is constrained qLogNEHVI, the cheap one ParEGO UCB x PoF; the front holds only
    feasible expensive results."""
    run = _run(make_config, tmp_path, "mfpc", "gmm-toy", TwoBowlsTox(seed=0),
               CheapTwoBowlsTox(seed=1, noise_std=0.05), per_round=6, objectives=OBJECTIVES,
               constraints=[{"name": "tox", "op": "<=", "bound": 0.0}],
               surrogate={"scalarization": "parego", "fit_maxiter": 60},
               sampler={"alpha": 0.1, "num_steps": 8},
               workers={"count": 2, "particles_per_worker": 64})
    cfg, rounds, cheap_rounds, done, cheap_done = (
        run.cfg, run.rounds, run.cheap_rounds, run.done, run.cheap_done)
    with Storage.open(run.url) as st:
        full = campaign_status(st, "mfpc", load_campaign_config(st, "mfpc"), with_diagnostics=True)
    picks = [(r.summary or {}).get("fidelity", {}).get("expensive_pick") for r in rounds]
    assert picks[1:] == ["multi-task qLogNEHVI (constrained)"] * 3, picks
    how = [(r.summary or {}).get("pick") for r in cheap_rounds][1:]
    assert how == ["multi-task ParEGO UCB x PoF"] * 3, how
    assert all({"near", "cost", "tox"} <= set(q.values or {}) for q in cheap_done)
    feasible = {q.key: bool(is_feasible(q.values, cfg.constraints)) for q in done}
    late = [feasible[q.key] for q in done if q.round_index >= 2]
    assert len(late) == 8 and sum(late) >= 6, [(q.round_index, q.values) for q in done]
    p = full.diagnostics["pareto"]  # type: ignore[index]
    assert p["front"] and all(feasible[k] for k in p["front"]), p
    assert set(p["front"]) <= run.lab_keys


def test_auto_alpha_gap_uses_the_multitask_predictions(ray_session: str, tiny_prior_path: str,
                                                       lab, make_config, tmp_path) -> None:
    from optimizer.campaign.auto_alpha import read_auto_inputs

    url = f"sqlite:///{tmp_path / 'mfa.db'}"
    name = "mfa"
    with LabSimulator(BiasedBowl(seed=1, noise_std=0.05)).start() as cheap:
        cfg = make_config(name, tiny_prior_path, lab.url, url,
                          sampler={"alpha": "auto", "kl_budget": 0.5, "alpha_min": 1e-3,
                                   "alpha_max": 1e3},
                          budget={"q": 3, "max_in_flight": 3, "total": 12, "poll_interval_s": 0.05},
                          **_cheap(cheap.url, per_round=6))
        status = run_campaign(cfg)
        assert status.status == "completed" and status.results == 12, status
        with Storage.open(url) as st:
            _exactly_once(st, name, lab, cheap)
            rounds = st.list_rounds(name)
            points = st.query_points(name)
            picked = {r.index: [c for c in st.list_candidates(name, r.index) if c.selected]
                      for r in rounds}
            inputs = read_auto_inputs(st, name, rounds[:3], cfg)
    fid = [(r.summary or {})["fidelity"] for r in rounds]
    assert [f.get("expensive_pick") for f in fid][1:] == ["multi-task qLogNEI"] * 3
    # the picked candidates of a multi-task round carry the multi-task GP's prediction
    assert all(f.get("surrogate_mean", "").startswith("multi-task GP") for f in fid[1:])
    assert all(c.surrogate_mean is not None and c.surrogate_std is not None
               for i in (1, 2, 3) for c in picked[i])
    # round 3's brake looked at the gap of the last tilted round complete when it was planned
    # (round 2, or round 1 when round 2's status was not yet updated): mean(stored multi-task
    # prediction - result) over the std of the results so far, recomputed here from the stored
    # queries; rounds 1 and 2 were both picked by the multi-task GP
    ok = [p for p in points if p.status == "succeeded" and p.values is not None]
    assert len(ok) == 12 and all(p.surrogate_mean is not None for p in ok if p.round_index >= 1)
    assert inputs.gap is not None and inputs.gap.round_index == 2
    figures = []
    for j in (1, 2):
        pairs = [(p.surrogate_mean, p.values["y"]) for p in ok if p.round_index == j]  # type: ignore[index]
        gap = float(np.mean([m - v for m, v in pairs]))  # type: ignore[operator]
        if j == 2:
            assert inputs.gap.gap == pytest.approx(gap)
        for last in (j, 2):
            std = float(np.std([p.values["y"] for p in ok if p.round_index <= last]))  # type: ignore[index]
            figures.append(gap / std)
    a3 = (rounds[3].summary or {})["alpha_auto"]
    assert a3["gap"] is not None and math.isfinite(a3["gap"])
    assert any(a3["gap"] == pytest.approx(f, rel=1e-6) for f in figures), (a3["gap"], figures)
