"""What the SMC workers ask of a Ray cluster, whether the cluster can give it, and a placement
group that reserves it for every worker at once.

A worker asks for ``cpus_per_worker`` CPUs, a GPU share when the config says so, and the
campaign's custom resources (``workers.resources``, e.g. ``{tiltloop_worker = 1}`` so workers
land only on nodes started with ``ray start --resources='{"tiltloop_worker": 1}'``). Before a
pool starts, :func:`check_cluster` counts how many such workers the cluster's live nodes can hold
and fails with a message naming what is missing, instead of the silent hang of an actor Ray
cannot place. :func:`reserve` then creates one placement group with a bundle per worker and waits
(bounded) until all bundles are placed, so a round never starts half-placed.

    >>> demand = WorkerDemand(count=2, cpus=1.0, gpus=0.0, resources={"tiltloop_worker": 1.0})
    >>> check_cluster(demand)                       # doctest: +SKIP
    >>> pg = reserve(demand, timeout_s=60)          # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import ray

from optimizer.errors import WorkerPoolError

_EPS = 1e-9


@dataclass(frozen=True)
class WorkerDemand:
    """The resources of ``count`` identical workers (per worker: ``cpus``, ``gpus``, custom)."""

    count: int
    cpus: float
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)

    def bundle(self) -> dict[str, float]:
        """One worker's placement-group bundle (zero amounts left out: Ray refuses them)."""
        out = {"CPU": float(self.cpus)}
        if self.gpus > 0:
            out["GPU"] = float(self.gpus)
        out.update({k: float(v) for k, v in self.resources.items() if v > 0})
        return out

    def actor_options(self) -> dict[str, Any]:
        """Ray actor options asking for one worker's resources."""
        opts: dict[str, Any] = {"num_cpus": float(self.cpus)}
        if self.gpus > 0:
            opts["num_gpus"] = float(self.gpus)
        custom = {k: float(v) for k, v in self.resources.items() if v > 0}
        if custom:
            opts["resources"] = custom
        return opts

    def describe(self) -> str:
        """E.g. ``workers.count=4 × (cpus_per_worker=1, tiltloop_worker=1)``."""
        parts = [f"cpus_per_worker={self.cpus:g}"]
        if self.gpus > 0:
            parts.append(f"gpus={self.gpus:g}")
        parts += [f"{k}={v:g}" for k, v in sorted(self.resources.items())]
        return f"workers.count={self.count} × ({', '.join(parts)})"


def _fits_on(node_resources: dict[str, float], bundle: dict[str, float]) -> int:
    """How many bundles fit on a node with these total resources."""
    n = math.inf
    for name, need in bundle.items():
        have = float(node_resources.get(name, 0.0))
        n = min(n, math.floor(have / need + _EPS))
    return 0 if n == math.inf else int(n)


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes as ``ray.nodes()`` reports them."""
    return [n for n in ray.nodes() if n.get("Alive")]


def capacity(demand: WorkerDemand, nodes: list[dict[str, Any]] | None = None) -> int:
    """How many workers of ``demand`` the live nodes can hold (by their total resources)."""
    nodes = alive_nodes() if nodes is None else nodes
    bundle = demand.bundle()
    return sum(_fits_on(n.get("Resources", {}), bundle) for n in nodes)


def shortfall_message(demand: WorkerDemand, nodes: list[dict[str, Any]] | None = None) -> str:
    """What the cluster lacks for ``demand``, e.g. "workers.count=4 × cpus_per_worker=1 needs 4
    CPUs with resource tiltloop_worker; the cluster has room for 2 such workers (...)"."""
    nodes = alive_nodes() if nodes is None else nodes
    bundle = demand.bundle()
    needs = ", ".join(f"{demand.count * v:g} {k}" for k, v in bundle.items())
    room = capacity(demand, nodes)
    totals: dict[str, float] = {}
    for n in nodes:
        for k, v in n.get("Resources", {}).items():
            if k in bundle:
                totals[k] = totals.get(k, 0.0) + float(v)
    has = ", ".join(f"{totals.get(k, 0.0):g} {k}" for k in bundle)
    return (f"{demand.describe()} needs {needs} (each worker on one node); the Ray cluster's "
            f"{len(nodes)} live node(s) have {has} in all, room for {room} such worker(s). Lower "
            "workers.count / cpus_per_worker, or add nodes with these resources (`ray start "
            "--num-cpus N --resources '{\"NAME\": N}'`)")


def check_cluster(demand: WorkerDemand) -> None:
    """Fail at once when the cluster's live nodes cannot hold ``demand`` (no hang).

    Raises:
        WorkerPoolError: naming the demand and what the cluster has.
    """
    nodes = alive_nodes()
    if capacity(demand, nodes) < demand.count:
        raise WorkerPoolError(shortfall_message(demand, nodes))


def reserve(demand: WorkerDemand, *, timeout_s: float) -> Any:
    """A placement group of ``demand.count`` bundles (spread over nodes), ready within
    ``timeout_s``; removed again when it is not.

    Raises:
        WorkerPoolError: the cluster could not place every bundle in time (other jobs hold the
            resources, or nodes went away), naming the demand and what is free now.
    """
    from ray.util.placement_group import placement_group, remove_placement_group

    check_cluster(demand)
    pg = placement_group([demand.bundle()] * demand.count, strategy="SPREAD")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        try:
            remove_placement_group(pg)
        except Exception:  # noqa: BLE001 — best effort; the error below is what matters
            pass
        free = ray.available_resources()
        free_s = ", ".join(f"{free.get(k, 0.0):g} {k}" for k in demand.bundle())
        raise WorkerPoolError(
            f"the Ray cluster could not place all workers within workers.placement_timeout_s = "
            f"{timeout_s:g} s: {demand.describe()}; free now: {free_s}. Other jobs may hold "
            "the resources, or nodes left the cluster")
    return pg


def release(pg: Any) -> None:
    """Remove a placement group (its actors end with it); no error when it is already gone."""
    from ray.util.placement_group import remove_placement_group

    try:
        remove_placement_group(pg)
    except Exception:  # noqa: BLE001 — Ray may already be shut down
        pass


def in_group(pg: Any) -> dict[str, Any]:
    """Actor options scheduling an actor into any free bundle of ``pg``."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_capture_child_tasks=False)}
