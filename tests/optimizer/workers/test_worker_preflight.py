"""Worker resources are checked before a campaign is written: ``use_gpu = "on"`` without a GPU,
custom resources a local Ray cannot have, more CPUs than the machine or the cluster has — each
is one message naming the field, exit status 2, and no campaign row (no traceback, no hang)."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from optimizer.campaign.config_io import parse_config
from optimizer.campaign.service import preflight
from optimizer.errors import PreflightError

ROOT = Path(__file__).parents[3]


def _toml(workers: str) -> str:
    return f"""name = "pf"
[prior]
name = "gmm-toy"
[oracle]
kind = "botorch"
function = "branin"
[[objectives]]
name = "y"
[workers]
particles_per_worker = 16
{workers}
[budget]
q = 2
total = 4
"""


CASES = {
    "gpu-on-without-gpu": ('count = 1\nuse_gpu = "on"', "field `workers.use_gpu`: \"on\" but this "
                           "machine has no GPU"),
    "custom-resources-on-local-ray": ('count = 1\nresources = { tiltloop_worker = 1 }',
                                      "field `workers.resources`: ['tiltloop_worker'] are custom"),
    "more-cpus-than-the-machine": (f"count = {(os.cpu_count() or 1) + 1}\ncpus_per_worker = 1",
                                   "needs"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_local_run_refuses_before_writing(case: str, tmp_path: Path) -> None:
    if case == "gpu-on-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    workers, message = CASES[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(_toml(workers))
    db = tmp_path / "t.db"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "optimizer.cli", "run", str(cfg), "--url",
                          f"sqlite:///{db}"], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and str(cfg) in out.stderr
    assert "Traceback" not in out.stderr
    if db.exists():  # the campaign was never written
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master")}
            if "campaigns" in tables:
                assert conn.execute("select count(*) from campaigns").fetchone()[0] == 0


def _config(**workers: Any) -> Any:
    return parse_config({"name": "pf", "prior": {"name": "gmm-toy"},
                         "oracle": {"kind": "botorch", "options": {"function": "branin"}},
                         "objectives": [{"name": "y"}],
                         "workers": {"particles_per_worker": 16, **workers},
                         "budget": {"q": 2, "total": 4}}, "<pf>")


def test_a_running_cluster_is_asked(ray_session: str) -> None:
    # the session Ray has 2 CPUs: 3 one-CPU workers do not fit; a GPU it has none
    with pytest.raises(PreflightError, match=r"^src: fields `workers`: workers.count=3 .* room for 2"):
        preflight(_config(count=3, cpus_per_worker=1), source="src")
    if not torch.cuda.is_available():
        with pytest.raises(PreflightError, match=r"field `workers.use_gpu`: \"on\" but the Ray "
                                                 r"cluster has no GPU"):
            preflight(_config(count=1, use_gpu="on"), source="src")
    preflight(_config(count=2, cpus_per_worker=1), source="src")  # fits: no error
