"""The scheduler in-process: two replicas split the campaigns of one database and drive them to
completion on one Ray; a failing driver backs off; stop() ends drivers and releases leases."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pg_schemas import postgres_schema_url
from campaign_oracles import Bowl
from serve_helpers import (campaign_states, create_campaigns, small_config,
                           wait_until)

from optimizer.campaign.service import open_storage
from optimizer.service.metrics import ServiceMetrics, sample
from optimizer.service.pools import WorkerPools
from optimizer.service.scheduler import Scheduler
from oracles.labsim import LabSimulator
from tiltloop.logs import current_campaign


NAMES = ["c1", "c2", "c3", "c4"]


@pytest.mark.slow
def test_two_replicas_split_four_campaigns_and_complete_them(
        ray_session: str, pg_schema: str, tiny_prior_path: str) -> None:
    url = postgres_schema_url(pg_schema)
    with LabSimulator(Bowl(seed=0, latency_s=0.2)) as lab:
        create_campaigns(url, [small_config(n, tiny_prior_path, lab.url, url) for n in NAMES])
        stores = [open_storage(url, create=False) for _ in range(3)]
        metrics = [ServiceMetrics(), ServiceMetrics()]
        pools = [WorkerPools(), WorkerPools()]
        replicas = [Scheduler(stores[i], owner=f"replica-{i}", metrics=metrics[i],
                              lease_ttl_s=10, tick_s=0.2, max_campaigns=2, pools=pools[i])
                    for i in range(2)]
        overlap: list[set[str]] = []
        try:
            for r in replicas:
                r.start()

            def done() -> bool:
                both = set(replicas[0].running()) & set(replicas[1].running())
                if both:
                    overlap.append(both)
                return all(stores[2].load_campaign(n).status == "completed" for n in NAMES)

            wait_until(done, 150, "4 campaigns completed by 2 schedulers",
                       lambda: campaign_states(stores[2], NAMES), every_s=0.1)
        finally:
            late = [r.stop(timeout_s=30) for r in replicas]
            for p in pools:
                p.shutdown_all()
        assert late == [[], []]
        assert not overlap, f"campaigns driven by both replicas at once: {overlap}"
        owners: dict[str, set[str]] = {}
        for name in NAMES:
            events = stores[2].list_events(name, kind="campaign.lease")
            owners[name] = {e.payload["owner"] for e in events}
            assert stores[2].campaign_lease(name) is None  # released when the driver ended
            counts = stores[2].query_counts(name)
            assert counts["succeeded"] == 6 and sum(counts.values()) == 6, counts
        # each replica drives at most 2 at once, so the first 4 leases went 2 and 2
        first = {name: stores[2].list_events(name, kind="campaign.lease")[0].payload["owner"]
                 for name in NAMES}
        assert sorted(first.values()) == ["replica-0"] * 2 + ["replica-1"] * 2, first
        for i in range(2):
            assert sample(metrics[i], "tiltloop_lease_changes_total", {"change": "acquired"}) >= 2
            assert sample(metrics[i], "tiltloop_lease_changes_total", {"change": "released"}) >= 2
            assert sample(metrics[i], "tiltloop_lease_changes_total",
                          {"change": "lost"}) is None
        # every evaluation the lab made is stored as succeeded, none twice
        stats = lab.stats()
        assert max(stats["evaluations"].values()) == 1
        stored = {q.key for n in NAMES for q in stores[2].list_queries(n, statuses=("succeeded",))}
        assert set(stats["evaluations"]) == stored
        for s in stores:
            s.close()


# ---- stand-in drivers (no Ray): failure backoff and stop ------------------------------------
@pytest.fixture()
def sqlite_campaigns(tmp_path: Path, tiny_prior_path: str) -> str:
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    create_campaigns(url, [small_config(n, tiny_prior_path, "http://127.0.0.1:9", url)
                           for n in ("ok", "bad")])
    return url


def test_a_failing_driver_is_logged_released_and_backed_off(
        sqlite_campaigns: str, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, float]] = []
    contexts: list[str | None] = []

    def drive(config: Any, storage: Any, *, should_stop: Any, lease_owner: str,
              **_: Any) -> str:
        calls.append((config.name, time.monotonic()))
        contexts.append(current_campaign())  # the driver thread's log lines carry its campaign
        assert storage.campaign_lease(config.name).owner == lease_owner
        if config.name == "bad":
            raise RuntimeError("prior exploded")
        while not should_stop():
            time.sleep(0.02)
        return "stopped"

    metrics = ServiceMetrics()
    with open_storage(sqlite_campaigns, create=False) as storage:
        sched = Scheduler(storage, owner="replica-a", metrics=metrics, tick_s=0.05,
                          backoff_s=(0.4, 0.8), drive_fn=drive)
        with caplog.at_level(logging.WARNING, logger="optimizer.service.scheduler"):
            sched.start()
            try:
                wait_until(lambda: sum(1 for n, _ in calls if n == "bad") >= 3, 15,
                           "three attempts of the failing campaign")
                # the third attempt is recorded as it starts: it is still running until it
                # raises and the scheduler collects it (a loaded machine showed ['bad', 'ok'])
                wait_until(lambda: sched.running() == ["ok"], 10,
                           "the failing campaign's attempt to end (backing off)")
                assert storage.campaign_lease("ok").owner == "replica-a"
                assert "bad" in sched.backing_off() or storage.campaign_lease("bad") is None
            finally:
                assert sched.stop(timeout_s=10) == []
        bad = [t for n, t in calls if n == "bad"]
        gaps = [b - a for a, b in zip(bad, bad[1:])]
        assert gaps[0] >= 0.35 and gaps[1] >= 0.75, gaps  # 0.4 s, then doubled (capped 0.8)
        assert [n for n, _ in calls].count("ok") == 1
        failures = [r for r in caplog.records if "its driver failed" in r.getMessage()]
        assert len(failures) >= 3 and failures[0].exc_info is not None
        assert "campaign bad: its driver failed (RuntimeError: prior exploded); lease released, " \
               "this replica retries it in 0.4 s" in failures[0].getMessage()
        assert contexts == [n for n, _ in calls]
        assert storage.campaign_lease("bad") is None and storage.campaign_lease("ok") is None
        assert sample(metrics, "tiltloop_lease_changes_total", {"change": "released"}) >= 4


def test_stop_names_a_driver_that_does_not_stop_and_readiness(
        sqlite_campaigns: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # readiness without a cluster
    release = threading.Event()

    def drive(config: Any, storage: Any, *, should_stop: Any, **_: Any) -> str:
        while not (should_stop() if config.name == "ok" else release.is_set()):
            time.sleep(0.02)
        return "stopped"

    with open_storage(sqlite_campaigns, create=False) as storage:
        sched = Scheduler(storage, owner="replica-b", tick_s=0.05, lease_ttl_s=5, drive_fn=drive)
        assert sched.readiness() == {"scheduler": "not started"}
        sched.start()
        wait_until(lambda: sched.running() == ["bad", "ok"], 10, "both campaigns driven")
        assert sched.readiness() == {}
        with caplog.at_level(logging.WARNING, logger="optimizer.service.scheduler"):
            began = time.monotonic()
            assert sched.stop(timeout_s=0.5) == ["bad"]
            assert time.monotonic() - began < 3
        assert sched.readiness() == {"scheduler": "stopping"}
        assert "campaign bad: its driver did not stop within 0.5 s" in caplog.text
        assert storage.campaign_lease("ok") is None  # the driver that stopped gave it back
        assert sched.tick() == []  # a stopped scheduler takes nothing
        release.set()
        wait_until(lambda: storage.campaign_lease("bad") is None, 5, "the late driver's release")
