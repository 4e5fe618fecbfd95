"""``[workers]`` placement fields: custom resources (names, finite non-negative numbers, not
CPU/GPU), chunk and placement timeouts (finite, > 0), ``[ray] head_timeout_s``; each bad value
is one message naming the field."""
from __future__ import annotations

from typing import Any

import pytest

from optimizer.campaign.config_io import parse_config
from optimizer.errors import CampaignConfigError


def _cfg(workers: dict[str, Any] | None = None, ray: dict[str, Any] | None = None) -> Any:
    return parse_config({"name": "w", "prior": {"name": "gmm-toy"},
                         "oracle": {"kind": "botorch", "options": {"function": "branin"}},
                         "objectives": [{"name": "y"}], "workers": workers or {},
                         "ray": ray or {}}, "<cfg>")


def test_defaults_and_a_good_table() -> None:
    w = _cfg().workers
    assert w.resources == {} and w.chunk_timeout_s == 3600 and w.placement_timeout_s == 120
    w = _cfg({"resources": {"tiltloop_worker": 1, "accelerator_type:A100": 0.5},
              "chunk_timeout_s": 60, "placement_timeout_s": 5}).workers
    assert w.resources == {"tiltloop_worker": 1.0, "accelerator_type:A100": 0.5}
    assert _cfg(ray={"head_timeout_s": 10}).ray.head_timeout_s == 10


@pytest.mark.parametrize("workers, ray, field, words", [
    ({"resources": {"": 1}}, None, "workers.resources", "resource name ''"),
    ({"resources": {"a b": 1}}, None, "workers.resources", "resource name 'a b'"),
    ({"resources": {"x": -1}}, None, "workers.resources", "must be a finite number >= 0"),
    ({"resources": {"x": float("inf")}}, None, "workers.resources.x", "finite"),
    ({"resources": {"x": float("nan")}}, None, "workers.resources.x", "finite"),
    ({"resources": {"x": True}}, None, "workers.resources.x", "got the boolean true"),
    ({"resources": {"x": "one"}}, None, "workers.resources.x", "number"),
    ({"resources": {"CPU": 2}}, None, "workers.resources", "cpus_per_worker"),
    ({"resources": {"GPU": 1}}, None, "workers.resources", "use_gpu"),
    ({"chunk_timeout_s": 0}, None, "workers.chunk_timeout_s", "greater than 0"),
    ({"chunk_timeout_s": float("inf")}, None, "workers.chunk_timeout_s", "finite"),
    ({"chunk_timeout_s": 1e308}, None, "workers.chunk_timeout_s", "less than or equal"),
    ({"placement_timeout_s": -5}, None, "workers.placement_timeout_s", "greater than 0"),
    (None, {"head_timeout_s": 120}, "ray.head_timeout_s", "less than or equal to 55"),
])
def test_bad_values_name_the_field(workers: Any, ray: Any, field: str, words: str) -> None:
    with pytest.raises(CampaignConfigError) as err:
        _cfg(workers, ray)
    assert field in str(err.value) and words in str(err.value), str(err.value)
