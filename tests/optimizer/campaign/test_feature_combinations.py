"""Constraints, Pareto campaigns and cheap evaluators each work alone and in every combination
(each pick models the other features' outputs); a config is parsed, validated and accepted."""
from __future__ import annotations

from typing import Any

import pytest

from optimizer.campaign.config_io import CampaignConfigError, parse_config

LAB = {"kind": "http", "base_url": "http://127.0.0.1:8", "objectives": ["y", "z", "tox"]}
CHEAP = {"name": "sim", "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9",
                                   "objectives": ["y", "z", "tox"]}}
PARETO = {"scalarization": "parego"}
CONSTRAINT = {"name": "tox", "op": "<=", "bound": 0.3}


def _data(**extra: Any) -> dict[str, Any]:
    return {"name": "c", "prior": {"name": "gmm-toy"}, "oracle": LAB,
            "objectives": [{"name": "y"}, {"name": "z"}], **extra}


def _cheap_reporting(*outputs: str) -> dict[str, Any]:
    return {**CHEAP, "oracle": {**CHEAP["oracle"], "objectives": list(outputs)}}


@pytest.mark.parametrize(("extra", "words"), [
    # the multi-task GPs model every Pareto objective and every constraint: the cheap lab must
    # report them all
    ({"surrogate": PARETO, "oracles": [_cheap_reporting("y", "tox")]},
     "field `oracles.0.oracle`: oracle 'sim' reports ['y', 'tox'] but"),
    ({"constraints": [CONSTRAINT], "oracles": [_cheap_reporting("y", "z")]},
     "field `oracles.0.oracle`: oracle 'sim' reports ['y', 'z'] but"),
])
def test_cheap_oracle_missing_a_modelled_output_refused(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(CampaignConfigError) as info:
        parse_config(_data(**extra), "combo.toml")
    assert words in str(info.value) and "combo.toml" in str(info.value)


@pytest.mark.parametrize("extra", [
    {"surrogate": PARETO}, {"constraints": [CONSTRAINT]}, {"oracles": [CHEAP]},
    # Pareto + constraints: feasible hypervolume improvement (test_pareto_constraints_campaign)
    {"surrogate": PARETO, "constraints": [CONSTRAINT]},
    {"surrogate": {"acquisition": "qlognehvi"}, "constraints": [CONSTRAINT]},
    # cheap evaluators model the constraint outputs / every Pareto objective too
    {"constraints": [CONSTRAINT], "oracles": [CHEAP]}, {"surrogate": PARETO, "oracles": [CHEAP]},
    {"surrogate": PARETO, "constraints": [CONSTRAINT], "oracles": [CHEAP]},
])
def test_each_feature_and_combination_is_accepted(extra: dict[str, Any]) -> None:
    cfg = parse_config(_data(**extra), "one.toml")
    assert cfg.constraints or cfg.oracles or cfg.surrogate.scalarization == "parego"
    assert cfg.surrogate_for_loop().num_constraints == len(extra.get("constraints", []))
