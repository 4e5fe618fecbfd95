"""Multi-node Ray, really run: a head and two worker nodes (separate ``ray start`` processes and
raylets on loopback, ``tests/ray_cluster.py``), campaigns driven from a subprocess.

- workers land on worker nodes only (custom resource), one per node (placement group);
- a prior folder the worker nodes cannot see (hidden by a private tmpfs mount) reaches them
  through the object store, and the round equals the same round run in this process;
- the cluster is checked before a round: too many workers fail at once, naming what is missing;
- a worker node's raylet SIGKILLed mid-round: the round completes on the other node, identical
  (with and without room there for the replacement);
- the head SIGKILLed under ``tiltloop run``: the driver exits 4 naming the address and
  ``tiltloop resume NAME``; on the restarted head ``resume`` completes, every query once.

Marked ``multinode``: they run by default (and in CI); skip with ``-m "not multinode"`` or
``TILTLOOP_SKIP_MULTINODE=1``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray_cluster import RayCluster, can_hide_folders

from optimizer.das.config import DASOptions
from optimizer.seeds import derive_seed
from optimizer.workers.smc_worker import ChunkSpec, SMCWorkerImpl

pytestmark = [
    pytest.mark.multinode,
    pytest.mark.skipif(os.environ.get("TILTLOOP_SKIP_MULTINODE") == "1",
                       reason="TILTLOOP_SKIP_MULTINODE=1"),
]
DRIVER = str(Path(__file__).parents[2] / "cluster_driver.py")
ROOT = str(Path(__file__).parents[3])


def _config(prior: str, **workers: Any) -> dict[str, Any]:
    return {
        "name": "mn", "seed": 11, "prior": {"name": prior, "device": "cpu"},
        "oracle": {"kind": "botorch", "options": {"function": "branin"}},
        "objectives": [{"name": "y"}], "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 1.0, "num_steps": 20},
        "workers": {"count": 2, "chunks_per_worker": 2, "particles_per_worker": 256,
                    "cpus_per_worker": 1, "resources": {"tiltloop_worker": 1},
                    "placement_timeout_s": 30, **workers},
        "budget": {"q": 4, "total": 8},
    }


def _drive(cluster: RayCluster, tmp: Path, config: dict[str, Any], *, marker: Path | None = None,
           wait: bool = True, where_after: bool = False) -> Any:
    spec, out = tmp / "spec.json", tmp / "out.json"
    spec.write_text(json.dumps({"config": config, "round": 0, "where_after": where_after,
                                "marker": str(marker) if marker else None}))
    env = {**cluster.env(), "PYTHONPATH": os.pathsep.join([ROOT, str(Path(ROOT) / "tests")])}
    proc = subprocess.Popen([sys.executable, DRIVER, str(spec), str(out)], env=env, cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc, out
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, (json.loads(out.read_text()) if out.exists() else None), stderr


def _reference(prior: str, config: dict[str, Any]) -> list[np.ndarray]:
    """The same round's chunks run in this process (no Ray): what every run must reproduce."""
    w = config["workers"]
    worker = SMCWorkerImpl(prior, "identity", device="cpu", num_threads=1)
    das = DASOptions(num_steps=config["sampler"]["num_steps"])
    return [worker.run_chunk(ChunkSpec(round_index=0, chunk=c, seed=derive_seed(config["seed"], 0, c),
                                       num_particles=w["particles_per_worker"], alpha=1.0,
                                       das=das)).samples
            for c in range(w["count"] * w["chunks_per_worker"])]


@pytest.fixture(scope="module")
def hidden_prior(tiny_prior_path: str) -> str:
    if not can_hide_folders():
        why = ("cannot start a process in a private mount namespace (`unshare --mount` needs "
               "CAP_SYS_ADMIN) to hide the prior folder from the worker nodes")
        if os.environ.get("CI"):  # CI runs as root: there a missing namespace is a failure
            pytest.fail(why)
        pytest.skip(why)
    return tiny_prior_path


@pytest.fixture(scope="module")
def cluster(hidden_prior: str) -> Iterator[RayCluster]:
    # the worker nodes see an empty folder where the prior's folder is
    with RayCluster(workers=2, hide=[str(Path(hidden_prior).parent)]) as c:
        yield c


def test_workers_on_worker_nodes_only_prior_shipped_round_identical(
        cluster: RayCluster, hidden_prior: str, tmp_path: Path) -> None:
    config = _config(hidden_prior)
    rc, out, stderr = _drive(cluster, tmp_path, config)
    assert rc == 0, stderr[-3000:]
    nodes = {w["node_id"] for w in out["where"]}
    assert len(nodes) == 2 and not nodes & set(out["head_nodes"])  # one per worker node
    # no worker node can read the folder: each rebuilt it from the shipped files
    assert {w["prior_source"] for w in out["where"]} == {"shipped"}
    assert all(w["prior_path"] != hidden_prior for w in out["where"])
    ref = _reference(hidden_prior, config)
    assert len(out["samples"]) == len(ref)
    for got, want in zip(out["samples"], ref):
        assert np.array_equal(np.asarray(got), want)


def test_too_many_workers_fail_before_the_round_naming_the_shortfall(
        cluster: RayCluster, hidden_prior: str, tmp_path: Path) -> None:
    started = time.monotonic()
    rc, out, stderr = _drive(cluster, tmp_path, _config(hidden_prior, count=3))
    assert rc != 0 and out is None
    assert "workers.count=3 × (cpus_per_worker=1, tiltloop_worker=1) needs 3 CPU, 3 " \
           "tiltloop_worker" in stderr
    assert "room for 2 such worker(s)" in stderr
    assert time.monotonic() - started < 120  # no hang until a timeout: refused up front


@pytest.mark.parametrize("cpus_per_node", [1, 2])
def test_raylet_sigkill_mid_round_round_completes_on_other_node_identically(
        hidden_prior: str, tmp_path: Path, cpus_per_node: int) -> None:
    """1 CPU per node: the replacement cannot be placed anywhere, and the survivor does the dead
    node's chunks (no deadlock on the placement group). 2 CPUs per node: the placement group's
    lost bundle moves to the survivor and the replacement starts there."""
    config = _config(hidden_prior, particles_per_worker=4096, chunks_per_worker=3)
    config["sampler"]["num_steps"] = 60
    marker = tmp_path / "submitted"
    with RayCluster(workers=2, cpus_per_node=cpus_per_node,
                    hide=[str(Path(hidden_prior).parent)]) as cluster:
        proc, out_path = _drive(cluster, tmp_path, config, marker=marker, wait=False,
                                where_after=cpus_per_node == 2)
        deadline = time.monotonic() + 180
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), proc.communicate()[1][-3000:]
        assert cluster.kill("w1", "raylet", signal.SIGKILL)  # mid-round: chunks are running
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out = json.loads(out_path.read_text())
    assert len({w["node_id"] for w in out["where"]}) == 2  # spread: one worker per node
    assert out["replacements"] >= 1
    ref = _reference(hidden_prior, config)
    for got, want in zip(out["samples"], ref, strict=True):
        assert np.array_equal(np.asarray(got), want)
    if cpus_per_node == 1:
        # every chunk ran on a worker that was alive at the start (the replacement never placed)
        assert set(out["chunk_pids"]) <= {w["pid"] for w in out["where"]}
    else:
        after = {w["node_id"] for w in out["where_after"]}  # both slots on the surviving node
        assert len(after) == 1 and after <= {w["node_id"] for w in out["where"]}
        assert len({w["pid"] for w in out["where_after"]}) == 2
        assert {w["prior_source"] for w in out["where_after"]} == {"shipped"}


HEAD_CONFIG = """name = "hd"
seed = 1
[prior]
name = "{prior}"
device = "cpu"
[oracle]
kind = "callable"
target = "cluster_oracles:bowl"
[[objectives]]
name = "y"
[feature_map]
kind = "identity"
[sampler]
num_steps = 10
[workers]
count = 2
particles_per_worker = 256
chunks_per_worker = 2
cpus_per_worker = 1
resources = {{ tiltloop_worker = 1 }}
[ray]
head_timeout_s = 5
[budget]
q = 2
max_in_flight = 2
total = 6
poll_interval_s = 0.1
"""


def test_head_killed_driver_exits_naming_resume_then_resume_completes(
        tiny_prior_path: str, tmp_path: Path) -> None:
    from storage import Storage

    cfg = tmp_path / "hd.toml"
    cfg.write_text(HEAD_CONFIG.format(prior=tiny_prior_path))
    url = f"sqlite:///{tmp_path / 'hd.db'}"
    extra = {"PYTHONPATH": os.pathsep.join([ROOT, str(Path(ROOT) / "tests")]),
             "TILTLOOP_ALLOW_CALLABLES": "cluster_oracles"}
    cli = [sys.executable, "-m", "optimizer.cli"]
    with RayCluster(workers=2) as cluster:
        port = cluster.port
        proc = subprocess.Popen([*cli, "run", str(cfg), "--url", url], env={**cluster.env(), **extra},
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:  # kill the head while round 1 is being generated on the cluster
            lines.append(line)
            if "round 1: generating" in line:
                break
        assert any("round 1: generating" in ln for ln in lines), "".join(lines)[-3000:]
        assert cluster.kill("head")
        rest, _ = proc.communicate(timeout=120)
        output = "".join(lines) + rest
        assert proc.returncode == 4, output[-3000:]
        assert f":{port} has not answered for" in output and "`tiltloop resume hd`" in output
        assert "Traceback" not in output
    with RayCluster(workers=2, port=port) as cluster:  # the head is back, at the same address
        out = subprocess.run([*cli, "resume", "hd", "--url", url], env={**cluster.env(), **extra},
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    with Storage.open(url) as db:
        assert db.load_campaign("hd").status == "completed"
        queries = db.list_queries("hd")
        assert len(queries) == 6 and {q.status for q in queries} == {"succeeded"}
        assert len({q.key for q in queries}) == 6
