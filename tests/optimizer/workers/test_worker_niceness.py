"""A Ray that tiltloop starts itself runs its workers at the driver's niceness (Ray's default
would put them 15 above, where any other load on the host starves the sampler), or at the
configured ``ray.worker_niceness``. Run in a subprocess (this session has its own Ray; a process
can hold only one), whose driver first raises its own niceness by 2 (and configures 3 above that)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optimizer.campaign.config import RayConfig
from optimizer.campaign.service import _niceness_increment

ROOT = Path(__file__).parents[3]

SCRIPT = r"""
import json, os, sys
import ray
from optimizer.campaign.service import ray_init

@ray.remote(num_cpus=0)
class A:
    def nice(self):
        return os.nice(0)

os.nice(2)
seen = {}
for label, value in (("default", None), ("configured", os.nice(0) + 3)):
    ray_init(None, worker_niceness=value)
    seen[label] = ray.get(A.remote().nice.remote(), timeout=120)
    ray.shutdown()
print(json.dumps({"driver": os.nice(0), **seen}))
"""


def test_local_ray_workers_run_at_driver_or_configured_niceness() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    base = os.nice(0)
    assert seen == {"driver": base + 2, "default": base + 2, "configured": base + 5}, seen


def test_niceness_is_an_increment_over_the_driver() -> None:
    own = os.nice(0)
    assert _niceness_increment(None) == 0
    assert _niceness_increment(own + 3) == 3


def test_config_bounds_worker_niceness() -> None:
    assert RayConfig().worker_niceness is None
    assert RayConfig(worker_niceness=0).worker_niceness == 0
    with pytest.raises(ValueError, match="worker_niceness"):
        RayConfig(worker_niceness=20)
