"""The supervised pool replaces dead actors and redoes their chunk; a chunk's own error is not retried."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import ray

from optimizer.errors import WorkerPoolError
from optimizer.workers.placement import WorkerDemand
from optimizer.workers.pool import PoolEvent, SupervisedPool


@ray.remote(num_cpus=0.5)
class _Squarer:
    def __init__(self, fail_init: bool = False) -> None:
        if fail_init:
            raise RuntimeError("cannot load the prior")
        self.pid = os.getpid()
        self.calls = 0

    def run(self, chunk: dict) -> tuple[int, int]:
        self.calls += 1
        flag = chunk.get("die_flag")
        if flag and Path(flag).exists():
            Path(flag).unlink()  # die once, mid-task, like a segfault or an OOM kill
            os._exit(1)
        sleep_flag = chunk.get("sleep_flag")
        if sleep_flag and Path(sleep_flag).exists():
            Path(sleep_flag).unlink()  # hang once, like a wedged worker
            time.sleep(600)
        if chunk.get("sleep"):
            time.sleep(chunk["sleep"])
        if chunk.get("raise"):
            raise ValueError(f"bad chunk {chunk['x']}")
        return chunk["x"] ** 2, self.pid


def test_results_in_chunk_order(ray_session: str) -> None:
    with SupervisedPool(_Squarer, size=2) as pool:
        out = pool.map("run", [{"x": i} for i in range(7)])
    assert [r[0] for r in out] == [i * i for i in range(7)]
    assert len({r[1] for r in out}) == 2  # both actors worked
    assert pool.replacements == 0


@pytest.mark.slow
def test_actor_exiting_mid_task_is_replaced_and_chunk_redone(ray_session: str, tmp_path: Path) -> None:
    flag = tmp_path / "die"
    flag.touch()
    events: list[PoolEvent] = []
    with SupervisedPool(_Squarer, size=2) as pool:
        first = pool.actors
        out = pool.map("run", [{"x": i, "die_flag": str(flag)} for i in range(4)], on_event=events.append)
        assert [r[0] for r in out] == [0, 1, 4, 9]
        assert pool.replacements == 1
        assert len(set(pool.actors) & set(first)) == 1  # exactly one slot holds a new actor
        replaced = [e for e in events if e.kind == "replaced"]
        assert len(replaced) == 1
        # the redone chunk completed on the new actor, and every chunk completed exactly once
        assert sorted(e.chunk for e in events if e.kind == "done") == [0, 1, 2, 3]
        # the pool still works afterwards with its full size
        assert [r[0] for r in pool.map("run", [{"x": 5}, {"x": 6}])] == [25, 36]


def test_ray_kill_mid_round(ray_session: str) -> None:
    killed: list[int] = []

    def kill_first(event: PoolEvent) -> None:
        if event.kind == "submit" and not killed:
            killed.append(event.chunk)
            ray.kill(event.actor, no_restart=True)

    with SupervisedPool(_Squarer, size=2) as pool:
        out = pool.map("run", [{"x": i} for i in range(3)], on_event=kill_first)
        assert [r[0] for r in out] == [0, 1, 4]
        assert pool.replacements == 1 and killed == [0]


def test_chunk_error_is_not_retried(ray_session: str) -> None:
    with SupervisedPool(_Squarer, size=1) as pool:
        with pytest.raises(WorkerPoolError,
                           match=r"chunk 1 failed inside the worker: ValueError\('bad chunk 1'\)"):
            pool.map("run", [{"x": 0}, {"x": 1, "raise": True}])
        assert pool.replacements == 0


def test_retries_are_bounded(ray_session: str, tmp_path: Path) -> None:
    # every attempt finds the flag again: the chunk keeps killing its worker
    flag = tmp_path / "die"

    def rearm(event: PoolEvent) -> None:
        if event.kind == "submit":
            flag.touch()

    with SupervisedPool(_Squarer, size=1, max_retries=1) as pool:
        with pytest.raises(WorkerPoolError, match="chunk 0 lost its worker 2 times"):
            pool.map("run", [{"x": 3, "die_flag": str(flag)}], on_event=rearm)


def test_init_failure_is_reported_not_looped(ray_session: str) -> None:
    with SupervisedPool(_Squarer, size=1, actor_kwargs={"fail_init": True}) as pool:
        with pytest.raises(WorkerPoolError, match="failed to start, so chunk 0 cannot run: "
                                                  "RuntimeError: cannot load the prior$"):
            pool.map("run", [{"x": 1}])


def test_chunk_past_its_timeout_is_redone_on_a_replacement(ray_session: str, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    flag = tmp_path / "hang"
    flag.touch()
    with caplog.at_level(logging.WARNING, logger="optimizer.workers.pool"):
        with SupervisedPool(_Squarer, size=2, chunk_timeout_s=2.0) as pool:
            out = pool.map("run", [{"x": i, "sleep_flag": str(flag)} for i in range(3)])
    assert [r[0] for r in out] == [0, 1, 4]
    assert pool.replacements == 1 and not flag.exists()
    assert any("ran past workers.chunk_timeout_s = 2 s on chunk" in r.getMessage()
               for r in caplog.records)


def test_chunk_timeouts_are_bounded(ray_session: str) -> None:
    with SupervisedPool(_Squarer, size=1, chunk_timeout_s=1.0, max_retries=1) as pool:
        with pytest.raises(WorkerPoolError, match=r"chunk 0 lost its worker 2 times .*ran past "
                                                  r"workers.chunk_timeout_s = 1 s"):
            pool.map("run", [{"x": 2, "sleep": 30}])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_timeouts_must_be_finite_and_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="chunk_timeout_s must be a finite number > 0"):
        SupervisedPool(_Squarer, size=1, chunk_timeout_s=bad)


def test_more_workers_than_the_cluster_holds_fail_at_once(ray_session: str) -> None:
    # the session Ray has 2 CPUs: three 1-CPU workers never fit; say so instead of hanging
    started = time.monotonic()
    with pytest.raises(WorkerPoolError, match=r"workers.count=3 × \(cpus_per_worker=1\) needs "
                                              r"3 CPU .* have 2 CPU in all, room for 2 such"):
        SupervisedPool(_Squarer, size=3, demand=WorkerDemand(count=3, cpus=1.0))
    assert time.monotonic() - started < 30


def test_missing_custom_resource_is_named(ray_session: str) -> None:
    with pytest.raises(WorkerPoolError, match=r"needs 1 CPU, 1 tiltloop_worker .* have 2 CPU, 0 "
                                              r"tiltloop_worker in all, room for 0"):
        SupervisedPool(_Squarer, size=1, demand=WorkerDemand(1, 1.0, resources={"tiltloop_worker": 1}))


def test_workers_are_placed_together_or_the_pool_fails_in_time(ray_session: str) -> None:
    with SupervisedPool(_Squarer, size=2, demand=WorkerDemand(2, 1.0)) as pool:  # holds both CPUs
        assert [r[0] for r in pool.map("run", [{"x": 3}, {"x": 4}])] == [9, 16]
        with pytest.raises(WorkerPoolError, match=r"could not place all workers within "
                                                  r"workers.placement_timeout_s = 1 s"):
            SupervisedPool(_Squarer, size=1, demand=WorkerDemand(1, 1.0), placement_timeout_s=1.0)
    # released with the first pool: the same demand is placed now
    with SupervisedPool(_Squarer, size=1, demand=WorkerDemand(1, 1.0), placement_timeout_s=30) as pool:
        assert pool.map("run", [{"x": 5}])[0][0] == 25
