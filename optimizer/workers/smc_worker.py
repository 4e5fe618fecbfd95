"""The Ray SMC worker: loads the prior once, then runs DAS for one chunk of particles at a time.

A chunk's payload is plain data — JSON-able options, the surrogate STATE as bytes and the
training arrays — never a pickled model: the worker rebuilds the surrogate itself, so what
crosses the process boundary is exactly what the database stores. Workers never call the
oracle or the database; a chunk redone on a replacement worker (same seed) is harmless.

    >>> pool = SupervisedPool(SMCWorker, size=2, actor_args=("gmm-toy", {"kind": "prior"}))  # doctest: +SKIP
    >>> out = pool.map("run_chunk", [chunk_payload(...), ...])                             # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import ray
import torch

from optimizer.campaign.seeds import torch_generator
from optimizer.workers.components import load_prior_bundle, rebuild_reward, zero_reward

@dataclass(frozen=True)
class ChunkSpec:
    """One chunk of one round.

    Attributes:
        round_index, chunk: lineage (the chunk is the candidates' group).
        seed: from ``derive_seed(campaign seed, round, chunk)``.
        num_particles, num_steps, alpha, tempering, guidance, options: DAS settings.
        surrogate_state: the surrogate's state bytes, or None for a plain-prior round.
        X, Y, Yvar: the surrogate's training data (`n x *design_shape`, `n x m`, `n x m` or None).
        beta: UCB weight of the reward `r̂ = μ + β σ`.
        die_flag: a file path: the first chunk that finds the file deletes it and kills its own
            worker process mid-chunk (a deterministic "worker died" for drills and tests).
    """

    round_index: int
    chunk: int
    seed: int
    num_particles: int
    num_steps: int
    alpha: float
    tempering: str = "adaptive"
    guidance: str = "auto"
    options: dict[str, Any] | None = None
    surrogate_state: bytes | None = None
    surrogate_config: dict[str, Any] | None = None
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    Yvar: np.ndarray | None = None
    beta: float = 1.0
    die_flag: str | None = None

    def payload(self) -> dict[str, Any]:
        """Plain-data form sent to the worker (bytes, arrays, JSON scalars)."""
        return asdict(self)


class SMCWorkerImpl:
    """The worker's logic, usable without Ray (tests, benchmarks of one process).

    Args:
        prior_name: bundled prior name or path (see ``optimizer.priors.registry``).
        feature_map: the campaign's ``[feature_map]`` table as a dict.
        device: "auto", "cpu" or "cuda".
        num_threads: torch intra-op threads (match the CPUs Ray gave the actor).
    """

    def __init__(self, prior_name: str, feature_map: dict[str, Any] | None = None, *,
                 device: str = "auto", num_threads: int = 1) -> None:
        torch.set_num_threads(max(1, int(num_threads)))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.bundle = load_prior_bundle(prior_name, feature_map or {}, device=self.device)
        self._reward_cache: tuple[Any, Any] | None = None
        self.pid = os.getpid()

    def run_chunk(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run DAS for one chunk; return numpy arrays (samples, features, weights, diagnostics)."""
        from optimizer.das import sample

        spec = ChunkSpec(**payload)
        flag = spec.die_flag
        if flag and os.path.exists(flag):
            os.unlink(flag)
            os._exit(1)  # a hard crash mid-round, like an OOM kill
        start = time.perf_counter()
        reward = self._reward(spec)
        opts = dict(spec.options or {})
        gen = torch_generator(spec.seed, self.device)
        result = sample(
            self.bundle.prior, reward, num_particles=spec.num_particles, alpha=spec.alpha,
            num_steps=spec.num_steps, tempering=spec.tempering,
            guidance="none" if spec.surrogate_state is None else spec.guidance,
            generator=gen, **opts,
        )
        with torch.no_grad():
            samples = result.samples.detach()
            features = self.bundle.features(samples)
        return {
            "round_index": spec.round_index, "chunk": spec.chunk,
            "samples": samples.cpu().double().numpy(),
            "features": features.detach().cpu().double().numpy(),
            "log_weights": result.log_weights.detach().cpu().double().numpy(),
            "rewards": result.rewards.detach().cpu().double().numpy(),
            "origin": result.origin.detach().cpu().numpy().astype(np.int64),
            "ess": result.ess.detach().cpu().double().numpy().reshape(-1),
            "lambdas": result.lambdas.detach().cpu().double().numpy().reshape(-1),
            "resampled": result.resampled.detach().cpu().numpy().reshape(-1).astype(bool),
            "log_normalizer": float(result.log_normalizer.reshape(-1)[0]),
            "seconds": time.perf_counter() - start,
            "pid": self.pid,
        }

    def _reward(self, spec: ChunkSpec) -> Any:
        if spec.surrogate_state is None:
            return zero_reward
        key = (spec.round_index, hash(spec.surrogate_state), spec.beta)
        if self._reward_cache is None or self._reward_cache[0] != key:
            reward = rebuild_reward(self.bundle, spec.surrogate_state, spec.surrogate_config or {},
                                    spec.X, spec.Y, spec.Yvar, beta=spec.beta)
            self._reward_cache = (key, reward)
        return self._reward_cache[1]

    def ping(self) -> int:
        """The worker's pid, once the prior is loaded."""
        return self.pid


SMCWorker = ray.remote(SMCWorkerImpl)


def worker_options(cpus: float, use_gpu: str, count: int = 1) -> dict[str, Any]:
    """Ray actor options: ``num_cpus``, and ``num_gpus`` (the cluster's GPUs shared by ``count``
    workers, at most one each) when the cluster has a GPU and ``use_gpu`` is not "off"."""
    opts: dict[str, Any] = {"num_cpus": cpus}
    gpus = float(ray.cluster_resources().get("GPU", 0)) if use_gpu != "off" else 0.0
    if use_gpu == "on" and gpus == 0:
        raise RuntimeError("workers.use_gpu = \"on\" but the Ray cluster has no GPU; use \"auto\"")
    if gpus > 0:
        opts["num_gpus"] = min(1.0, gpus / max(1, count))
    return opts
