"""With ``[[constraints]]``, an infeasible result is on no Pareto front: status (``campaign_pareto``),
export's ``pareto`` column and the dashboard's front agree."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.export import load_export_rows
from optimizer.campaign.pareto_summary import campaign_pareto
from optimizer.service.dashboard.data import campaign_bundle
from storage import NewCandidate, Storage

CONFIG = parse_config({
    "name": "mo", "prior": {"name": "gmm-toy"},
    "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9", "objectives": ["a", "b", "tox"]},
    "objectives": [{"name": "a", "direction": "maximize", "reference": 0.0},
                   {"name": "b", "direction": "maximize", "reference": 0.0}],
    "constraints": [{"name": "tox", "op": "<=", "bound": 0.5}]}, "mo.toml").to_json_dict()
#: (a, b, tox): the first dominates every other result but is infeasible
RESULTS = [(3.0, 3.0, 0.9), (2.0, 1.0, 0.1), (1.0, 2.0, 0.2), (0.5, 0.5, 0.3)]



def test_infeasible_results_are_on_no_front(storage: Storage) -> None:
    storage.create_campaign("mo", CONFIG)
    keys = storage.record_round("mo", 0, alpha=1.0, candidates=[
        NewCandidate(np.full(2, float(i))) for i in range(len(RESULTS))],
        selected=list(range(len(RESULTS))), oracle_name="lab").query_keys
    for key, (a, b, tox) in zip(keys, RESULTS, strict=True):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"a": a, "b": b, "tox": tox})
    summary = campaign_pareto(storage, "mo")
    assert summary is not None and set(summary["front"]) == {keys[1], keys[2]}
    # hypervolume of the feasible front {(2, 1), (1, 2)} above (0, 0): 2 + 2 - 1
    assert summary["hypervolume"] == pytest.approx(3.0)
    rows = load_export_rows(storage, "mo", objectives=[("a", "maximize"), ("b", "maximize")])
    assert {r.key for r in rows if r.pareto} == {keys[1], keys[2]}
    assert [r.feasible for r in rows] == [False, True, True, True]
    pareto = campaign_bundle(storage, "mo")["pareto"]
    assert pareto is not None and set(pareto["front"]) == {keys[1], keys[2]}
