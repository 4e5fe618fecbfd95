"""The supervised pool replaces dead actors and redoes their chunk; a chunk's own error is not retried."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

from optimizer.errors import WorkerPoolError
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
