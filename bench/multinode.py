"""Multi-node Ray on loopback: round time with the SMC workers on 1 vs 2 Ray worker nodes (the
same 2 CPUs in all), and the cost of shipping a prior folder to nodes that cannot read it.

Two clusters run side by side (``tests/ray_cluster.py``: each a head without CPUs plus worker
nodes, their own raylets): **one** worker node with 2 CPUs, and **two** worker nodes with 1 CPU
each whose processes cannot see the prior's folder (a private tmpfs over it), so each worker there
rebuilds it from the files the driver put in the object store. The prior is a copy of the
bundled ``manifold`` prior in a temp folder. Each measurement is a fresh driver process
(``tests/cluster_driver.py``: ``make_pool`` + one plain-prior round); the layouts alternate,
repeated; each node's rebuilt-prior cache is emptied before every run, so every start is a fresh
node's. Printed per layout: round seconds (median), the workers' start (pool made → every
worker answered: prior loaded, shipped or read), the driver's process CPU seconds, bytes
shipped, and the machine load.

    .venv/bin/python bench/multinode.py --repeats 3 --particles 2048 --steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from ray_cluster import RayCluster, can_hide_folders  # noqa: E402

DRIVER = str(ROOT / "tests" / "cluster_driver.py")


def _config(prior: str, particles: int, steps: int) -> dict[str, Any]:
    return {
        "name": "bench-mn", "seed": 0, "prior": {"name": prior, "device": "cpu"},
        "oracle": {"kind": "botorch", "options": {"function": "branin"}},
        "objectives": [{"name": "y"}], "feature_map": {"kind": "identity"},
        "sampler": {"alpha": 1.0, "num_steps": steps},
        "workers": {"count": 2, "chunks_per_worker": 2, "particles_per_worker": particles,
                    "cpus_per_worker": 1, "resources": {"tiltloop_worker": 1}},
        "budget": {"q": 2, "total": 2},
    }


def _run(cluster: RayCluster, config: dict[str, Any], work: Path) -> dict[str, Any]:
    for node in cluster.nodes:  # a fresh node: no prior rebuilt there yet
        shutil.rmtree(cluster.root / node / "tmp" / "tiltloop-priors", ignore_errors=True)
    spec, out = work / "spec.json", work / "out.json"
    spec.write_text(json.dumps({"config": config, "round": 0}))
    out.unlink(missing_ok=True)
    env = {**cluster.env(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, DRIVER, str(spec), str(out)], env=env, cwd=work,
                          capture_output=True, text=True, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed:\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["driver_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--particles", type=int, default=2048, help="particles per chunk")
    ap.add_argument("--steps", type=int, default=40, help="DAS steps")
    args = ap.parse_args(argv)
    if not can_hide_folders():
        print("needs `unshare --mount` (CAP_SYS_ADMIN) to hide the prior from the worker nodes")
        return 2

    from optimizer.priors.registry import BUNDLED
    from optimizer.workers.prior_files import pack_prior

    holder = Path(tempfile.mkdtemp(prefix="tl-bench-prior-"))
    prior = holder / "manifold-copy"
    assert BUNDLED["manifold"].path is not None
    shutil.copytree(BUNDLED["manifold"].path, prior)
    packed = pack_prior(str(prior))
    assert packed is not None
    config = _config(str(prior), args.particles, args.steps)
    work = Path(tempfile.mkdtemp(prefix="tl-bench-mn-"))
    layouts = {"1 node x 2 CPU (path readable)": RayCluster(workers=1, cpus_per_node=2),
               "2 nodes x 1 CPU (prior shipped)": RayCluster(workers=2, cpus_per_node=1,
                                                            hide=[str(holder)])}
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in layouts}
    loads: list[float] = []
    try:
        for cluster in layouts.values():
            cluster.start()
        for rep in range(args.repeats):
            order = list(layouts) if rep % 2 == 0 else list(reversed(layouts))  # interleaved
            for name in order:
                rows[name].append(_run(layouts[name], config, work))
                loads.append(os.getloadavg()[0])
    finally:
        for cluster in layouts.values():
            cluster.stop()
        shutil.rmtree(holder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"round: 2 workers x 2 chunks x {args.particles} particles, {args.steps} DAS steps; "
          f"prior {packed.nbytes / 1e6:.2f} MB in {len(packed.files)} files; "
          f"{args.repeats} repeats, interleaved")
    print(f"{'layout':34s} {'round s':>8s} {'start s':>8s} {'driver CPU s':>12s} {'sources':>10s}")
    med: dict[str, float] = {}
    for name, runs in rows.items():
        r = statistics.median(x["round_seconds"] for x in runs)
        s = statistics.median(x["ready_seconds"] for x in runs)
        c = statistics.median(x["driver_cpu"] for x in runs)
        src = ",".join(sorted({w["prior_source"] for x in runs for w in x["where"]}))
        med[name] = r
        med[name + " start"] = s
        print(f"{name:34s} {r:8.2f} {s:8.2f} {c:12.2f} {src:>10s}")
    one, two = list(rows)
    print(f"ratio round time 2 nodes / 1 node: {med[two] / med[one]:.2f}; worker start "
          f"(shipping {packed.nbytes / 1e6:.2f} MB to each fresh node) 2 nodes / 1 node: "
          f"{med[two + ' start'] / med[one + ' start']:.2f}")
    print(f"load average (1 min) during the runs: min {min(loads):.2f}, max {max(loads):.2f} "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
