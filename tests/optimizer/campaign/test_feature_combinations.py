"""Constraints, Pareto campaigns and cheap evaluators each work alone, cheap evaluators with
either of the others; the combinations whose surrogate pick does not model the other feature yet
are refused before anything is written, with a message naming both."""
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


@pytest.mark.parametrize(("extra", "words"), [
    ({"surrogate": PARETO, "constraints": [CONSTRAINT]}, "field `constraints`: cannot be combined"),
    ({"surrogate": {"acquisition": "qlognehvi"}, "constraints": [CONSTRAINT]},
     "field `constraints`: cannot be combined"),
])
def test_unsupported_combination_refused(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(CampaignConfigError) as info:
        parse_config(_data(**extra), "combo.toml")
    assert words in str(info.value) and "combo.toml" in str(info.value)


@pytest.mark.parametrize("extra", [
    {"surrogate": PARETO}, {"constraints": [CONSTRAINT]}, {"oracles": [CHEAP]},
    # cheap evaluators model the constraint outputs / every Pareto objective too
    {"constraints": [CONSTRAINT], "oracles": [CHEAP]}, {"surrogate": PARETO, "oracles": [CHEAP]},
])
def test_each_feature_alone_is_accepted(extra: dict[str, Any]) -> None:
    cfg = parse_config(_data(**extra), "one.toml")
    assert cfg.constraints or cfg.oracles or cfg.surrogate.scalarization == "parego"
