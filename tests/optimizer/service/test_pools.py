"""Shared worker pools: one pool per key, campaigns' rounds take FIFO turns, a bounded wait."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from optimizer.campaign.config_io import parse_config
from optimizer.errors import WorkerPoolError
from optimizer.service.pools import FairTurns, PoolTurnTimeout, WorkerPools, pool_key


def _config(name: str, prior: str = "p", cpus: float = 0.5,
            resources: dict[str, float] | None = None) -> Any:
    return parse_config({
        "name": name, "prior": {"name": prior},
        "oracle": {"kind": "http", "options": {"base_url": "http://127.0.0.1:9"}},
        "objectives": [{"name": "y"}], "feature_map": {"kind": "identity"},
        "workers": {"count": 1, "cpus_per_worker": cpus, "resources": resources or {}},
    }, f"<{name}>")


class _SlowPool:
    """Stands in for a SupervisedPool: records who ran when; each map takes ``seconds``."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls: list[str] = []
        self.active = 0
        self.overlap = False
        self.replacements = 2
        self.shut = False

    def map(self, method: str, chunks: list[Any], *, on_event: Any = None) -> list[Any]:
        self.active += 1
        self.overlap |= self.active > 1
        self.calls.append(chunks[0])
        time.sleep(self.seconds)
        self.active -= 1
        return list(chunks)

    def shutdown(self) -> None:
        self.shut = True


def test_one_pool_per_key_and_replacements_proxied() -> None:
    built: list[_SlowPool] = []
    pools = WorkerPools(make_pool=lambda c: built.append(_SlowPool()) or built[-1])
    a, b = pools.lend(_config("a")), pools.lend(_config("b"))
    c = pools.lend(_config("c", cpus=1.0))  # other resources: another pool
    gpu_nodes = pools.lend(_config("g", resources={"big_node": 1}))  # placed elsewhere: another
    assert len(built) == 3 and pool_key(_config("a")) == pool_key(_config("b"))
    assert pool_key(_config("x", resources={"n": 1, "m": 2})) == pool_key(
        _config("y", resources={"m": 2, "n": 1}))
    assert gpu_nodes.replacements == 2
    assert a.replacements == b.replacements == 2
    built[0].replacements = 5
    assert a.replacements == 5 and c.replacements == 2
    a.shutdown()  # a lent pool is not the borrower's to shut down
    assert not built[0].shut
    pools.shutdown_all()
    assert all(p.shut for p in built)
    with pytest.raises(WorkerPoolError, match="campaign 'd': the service is shutting down"):
        pools.lend(_config("d"))


def test_rounds_of_campaigns_interleave_in_arrival_order() -> None:
    pool = _SlowPool(seconds=0.03)
    pools = WorkerPools(make_pool=lambda c: pool)
    lent = {n: pools.lend(_config(n)) for n in ("a", "b", "c")}
    start = threading.Barrier(3)

    def campaign(name: str) -> None:
        start.wait(timeout=10)
        for i in range(5):
            lent[name].map("run", [f"{name}{i}"])

    threads = [threading.Thread(target=campaign, args=(n,)) for n in lent]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not pool.overlap  # one map at a time on the shared pool
    assert len(pool.calls) == 15
    # FIFO turns: while all three are waiting, nobody runs twice before the others ran once
    # (a campaign re-queues behind those already waiting); with an unfair lock one thread
    # could run its five rounds back to back.
    order = [c[0] for c in pool.calls]
    for i in range(3, 12):
        assert len(set(order[i:i + 3])) == 3, order


def test_turns_are_granted_by_ticket_order() -> None:
    turns = FairTurns("test")
    first = turns.acquire("a", 1)
    got: list[str] = []

    def wait(name: str) -> None:
        t = turns.acquire(name, 10)
        got.append(name)
        turns.release(t)

    threads = []
    for name in ("b", "c", "d"):
        threads.append(threading.Thread(target=wait, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while name not in turns.waiting() and time.monotonic() < deadline:
            time.sleep(0.005)
    assert turns.waiting() == ["a", "b", "c", "d"]
    turns.release(first)
    for t in threads:
        t.join(timeout=10)
    assert got == ["b", "c", "d"]


def test_a_wait_past_the_limit_fails_naming_the_campaign() -> None:
    pool = _SlowPool(seconds=1.0)
    pools = WorkerPools(make_pool=lambda c: pool, turn_timeout_s=0.2)
    hog, late = pools.lend(_config("hog")), pools.lend(_config("late"))
    t = threading.Thread(target=hog.map, args=("run", ["h"]))
    t.start()
    deadline = time.monotonic() + 5
    while not pool.calls and time.monotonic() < deadline:
        time.sleep(0.005)
    began = time.monotonic()
    with pytest.raises(PoolTurnTimeout, match=r"campaign 'late' waited 0.2 s for its turn on the "
                                              r"shared worker pool .*held by campaign 'hog'"):
        late.map("run", ["l"])
    assert time.monotonic() - began < 0.9
    t.join(timeout=10)
    assert late.map("run", ["l2"]) == ["l2"]  # the timed-out ticket left the queue
    assert pool.calls == ["h", "l2"]
