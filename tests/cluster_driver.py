"""A driver process for the multi-node tests and the benchmark: joins the cluster at
``$RAY_ADDRESS``, builds the campaign's worker pool with ``make_pool`` and runs one plain-prior
round of chunks; prints one JSON line (where each worker ran, how it found its prior, the
chunks' samples, pool replacements, seconds).

    python tests/cluster_driver.py SPEC.json OUT.json

SPEC: ``config`` (a campaign config dict), ``round`` (round index), ``marker`` (optional: a file
written once every first chunk is submitted, so a test can kill a node mid-round),
``where_after`` (optional: after one more short round, which replaces any worker lost with
the node, ask every actor again).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(spec_path: str, out_path: str) -> int:
    import ray

    from optimizer.campaign.config_io import parse_config
    from optimizer.campaign.service import make_pool, ray_runtime
    from optimizer.seeds import derive_seed
    from optimizer.workers.pool import PoolEvent
    from optimizer.workers.smc_worker import ChunkSpec

    spec = json.loads(Path(spec_path).read_text())
    config = parse_config(spec["config"], "<cluster test config>")
    marker = spec.get("marker")
    w = config.workers
    chunks = [ChunkSpec(round_index=spec["round"], chunk=c,
                        seed=derive_seed(config.seed, spec["round"], c),
                        num_particles=w.particles_per_worker, alpha=1.0,
                        das=config.sampler.das_options())
              for c in range(w.num_chunks)]
    submitted: set[int] = set()

    def on_event(ev: PoolEvent) -> None:
        if ev.kind == "submit":
            submitted.add(ev.slot)
            if marker and len(submitted) == w.count and not Path(marker).exists():
                Path(marker).write_text("submitted")

    with ray_runtime(config):
        t0 = time.perf_counter()
        pool = make_pool(config)
        started = time.perf_counter() - t0
        try:
            where = ray.get([a.where.remote() for a in pool.actors], timeout=300)
            ready = time.perf_counter() - t0  # every worker answered: its prior is loaded
            t1 = time.perf_counter()
            results = pool.map("run_chunk", chunks, on_event=on_event)
            seconds = time.perf_counter() - t1
            after = None
            if spec.get("where_after"):
                # a replacement started before the cluster declared the killed node dead can be
                # bound to it and die unstarted once the round no longer needs it; the next round
                # replaces it (as a campaign's would): then every slot's actor answers
                pool.map("run_chunk", chunks[:w.count])
                after = ray.get([a.where.remote() for a in pool.actors], timeout=120)
            head = [n["NodeID"] for n in ray.nodes()
                    if n["Alive"] and n["Resources"].get("CPU", 0) == 0]
            out = {"where": where, "where_after": after, "head_nodes": head,
                   "replacements": pool.replacements,
                   "samples": [r.samples.tolist() for r in results],
                   "chunk_pids": [r.pid for r in results],
                   "start_seconds": started, "ready_seconds": ready, "round_seconds": seconds}
        finally:
            pool.shutdown()
    Path(out_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
