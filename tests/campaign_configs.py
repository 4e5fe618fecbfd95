"""Small valid campaign configs for tests (importable by module name: ``tests/`` is on
``sys.path``): one definition for the campaign, scheduler and service tests."""
from __future__ import annotations

from typing import Any

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import parse_config


def campaign_config(name: str, prior: str, lab_url: str, db_url: str,
                 **sections: dict[str, Any]) -> CampaignConfig:
    """A small valid campaign config over the lab at ``lab_url``; ``sections`` override tables'
    keys (an ``oracle`` of another kind replaces the table)."""
    data: dict[str, Any] = {
        "name": name, "seed": 3,
        "prior": {"name": prior},
        "oracle": {"kind": "http", "options": {"base_url": lab_url, "timeout_s": 10.0}},
        "objectives": [{"name": "y", "direction": "maximize"}],
        "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 0.5, "num_steps": 8},
        "workers": {"count": 2, "particles_per_worker": 16, "cpus_per_worker": 0.5},
        "budget": {"q": 4, "max_in_flight": 8, "total": 12, "poll_interval_s": 0.05},
        "storage": {"url": db_url},
    }
    for key, value in sections.items():
        if key == "oracle" and value.get("kind", "http") != "http":
            data[key] = value  # another kind: the http options do not apply
            continue
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, f"<test config {name}>")
