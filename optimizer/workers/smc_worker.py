"""The Ray SMC worker: loads the prior once, then runs DAS for one chunk of particles at a time.

A chunk (:class:`ChunkSpec` in, :class:`ChunkResult` out: frozen dataclasses) is plain data —
typed options, the surrogate STATE as bytes and the training arrays — never a model object: the
worker rebuilds the surrogate itself, so what crosses the process boundary is exactly what the
database stores. Workers never call the oracle or the database; a chunk redone on a replacement
worker (same seed) is harmless.

    >>> pool = SupervisedPool(SMCWorker, size=2, actor_args=("gmm-toy", "prior"))  # doctest: +SKIP
    >>> results = pool.map("run_chunk", [ChunkSpec(...), ...])                   # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch

from optimizer.das.config import DASOptions
from optimizer.errors import PreflightError
from optimizer.seeds import torch_generator
from optimizer.surrogate.config import SurrogateConfig
from optimizer.workers.components import load_prior_bundle, rebuild_reward, zero_reward
from optimizer.workers.placement import WorkerDemand
from optimizer.workers.prior_files import PackedPrior, prior_path_on_this_node


@dataclass(frozen=True, eq=False)
class ChunkSpec:
    """One chunk of one round: what the driver sends a worker (plain data, no model objects).

    Attributes:
        round_index, chunk: lineage (the chunk is the candidates' group).
        seed: from ``derive_seed(campaign seed, round, chunk)``.
        num_particles: `P` of this chunk; alpha: `α` of this round.
        das: the campaign's DAS options (``[sampler]`` less α).
        surrogate_state: the surrogate's state bytes, or None for a plain-prior round.
        surrogate: the surrogate config the state was fitted with (its ``beta`` weighs
            `r̂ = μ + β σ`); None for a plain-prior round.
        X, Y, Yvar: the surrogate's training data (`n x *design_shape`, `n x m`, `n x m` or None).
        weights: this chunk's scalarization weights (ParEGO draws one set per chunk,
            ``optimizer.surrogate.pareto.parego_weights``); None: the config's.
        die_flag: a file path: the first chunk that finds the file deletes it and kills its own
            worker process mid-chunk (a deterministic "worker died" for drills and tests).
    """

    round_index: int
    chunk: int
    seed: int
    num_particles: int
    alpha: float
    das: DASOptions = field(default_factory=DASOptions)
    surrogate_state: bytes | None = None
    surrogate: SurrogateConfig | None = None
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    Yvar: np.ndarray | None = None
    die_flag: str | None = None
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True, eq=False)
class ChunkResult:
    """What a worker returns for one chunk (numpy arrays on the host).

    Attributes:
        samples: `P x *design_shape` designs; features: `P x k` = φ(samples).
        log_weights: `P` normalized log-weights; rewards: `P` final rewards.
        origin: `P` founder index of each particle; ess, lambdas, resampled: `T` diagnostics.
        log_normalizer: log Ẑ of the chunk; seconds: wall time; pid: the worker's process.
    """

    round_index: int
    chunk: int
    samples: np.ndarray
    features: np.ndarray
    log_weights: np.ndarray
    rewards: np.ndarray
    origin: np.ndarray
    ess: np.ndarray
    lambdas: np.ndarray
    resampled: np.ndarray
    log_normalizer: float
    seconds: float
    pid: int


class SMCWorkerImpl:
    """The worker's logic, usable without Ray (tests, benchmarks of one process).

    Args:
        prior_name: bundled prior name or path (see ``optimizer.priors.registry``).
        feature_map: the campaign's ``feature_map.kind`` ("prior" or "identity").
        device: "auto", "cpu" or "cuda".
        num_threads: torch intra-op threads (match the CPUs Ray gave the actor).
    """

    def __init__(self, prior_name: str, feature_map: str = "prior", *,
                 device: str = "auto", num_threads: int = 1,
                 prior_files: PackedPrior | None = None) -> None:
        torch.set_num_threads(max(1, int(num_threads)))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # a local prior folder comes with its files: rebuilt here when this node cannot read it
        self.prior_source = "bundled or path"
        load_from = prior_name
        if prior_files is not None:
            load_from, self.prior_source = prior_path_on_this_node(prior_files)
        self.bundle = load_prior_bundle(load_from, feature_map, device=self.device)
        self.bundle.name = prior_name
        self.prior_path = load_from
        self._reward_cache: tuple[Any, Any] | None = None
        self.pid = os.getpid()

    def run_chunk(self, spec: ChunkSpec) -> ChunkResult:
        """Run DAS for one chunk; return numpy arrays (samples, features, weights, diagnostics)."""
        from optimizer.das import sample

        flag = spec.die_flag
        if flag and os.path.exists(flag):
            os.unlink(flag)
            os._exit(1)  # a hard crash mid-round, like an OOM kill
        start = time.perf_counter()
        reward = self._reward(spec)
        opts = spec.das.sample_kwargs()
        if spec.surrogate_state is None:
            opts["guidance"] = "none"  # the plain prior: r = 0, nothing to guide by
        gen = torch_generator(spec.seed, self.device)
        result = sample(self.bundle.prior, reward, num_particles=spec.num_particles,
                        alpha=spec.alpha, generator=gen, **opts)
        with torch.no_grad():
            samples = result.samples.detach()
            features = self.bundle.features(samples)
        return ChunkResult(
            round_index=spec.round_index, chunk=spec.chunk,
            samples=samples.cpu().double().numpy(),
            features=features.detach().cpu().double().numpy(),
            log_weights=result.log_weights.detach().cpu().double().numpy(),
            rewards=result.rewards.detach().cpu().double().numpy(),
            origin=result.origin.detach().cpu().numpy().astype(np.int64),
            ess=result.ess.detach().cpu().double().numpy().reshape(-1),
            lambdas=result.lambdas.detach().cpu().double().numpy().reshape(-1),
            resampled=result.resampled.detach().cpu().numpy().reshape(-1).astype(bool),
            log_normalizer=float(result.log_normalizer.reshape(-1)[0]),
            seconds=time.perf_counter() - start, pid=self.pid,
        )

    def _reward(self, spec: ChunkSpec) -> Any:
        if spec.surrogate_state is None:
            return zero_reward
        beta = spec.surrogate.beta if spec.surrogate is not None else SurrogateConfig().beta
        key = (spec.round_index, hash(spec.surrogate_state), beta, spec.alpha, spec.weights)
        if self._reward_cache is None or self._reward_cache[0] != key:
            # a chunk with a surrogate state carries its training arrays (the driver sends both)
            assert spec.X is not None and spec.Y is not None
            reward = rebuild_reward(self.bundle, spec.surrogate_state, spec.X, spec.Y, spec.Yvar,
                                    beta=beta, alpha=spec.alpha, weights=spec.weights)
            self._reward_cache = (key, reward)
        return self._reward_cache[1]

    def ping(self) -> int:
        """The worker's pid, once the prior is loaded."""
        return self.pid

    def where(self) -> dict[str, Any]:
        """Where this worker runs and how it found its prior: ``pid``, ``node_id`` (Ray's; None
        outside Ray), ``prior_path`` and ``prior_source`` ("local", "shipped" or "bundled or
        path")."""
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return {"pid": self.pid, "node_id": node, "prior_path": self.prior_path,
                "prior_source": self.prior_source}


SMCWorker = ray.remote(SMCWorkerImpl)


def worker_demand(count: int, cpus: float, use_gpu: str,
                  resources: dict[str, float] | None = None) -> WorkerDemand:
    """What each of ``count`` workers asks the cluster for: ``cpus`` CPUs, the custom
    ``resources``, and a GPU share (the cluster's GPUs shared by ``count`` workers, at most one
    each) when the cluster has a GPU and ``use_gpu`` is not "off".

    Raises:
        PreflightError: ``use_gpu = "on"`` and the cluster has no GPU.
    """
    gpus = float(ray.cluster_resources().get("GPU", 0)) if use_gpu != "off" else 0.0
    if use_gpu == "on" and gpus == 0:
        raise PreflightError("field `workers.use_gpu`: \"on\" but the Ray cluster has no GPU; use "
                             "\"auto\" (a GPU when there is one) or \"off\"")
    share = min(1.0, gpus / max(1, count)) if gpus > 0 else 0.0
    return WorkerDemand(count=count, cpus=float(cpus), gpus=share, resources=dict(resources or {}))
