"""Database outages mid-campaign, on real Postgres behind a TCP forwarder that cuts and refuses
connections (``tests/faults/pg_forwarder.py``), against the lab simulator over real HTTP.

- a 2 s and a 30 s outage: the campaign finishes without a resume; every query has its result,
  the lab evaluated each key once and was POSTed each key once (nothing paid twice, no submit
  repeated because of a database retry); the driver's waits are WARNINGs naming the campaign;
- an outage longer than ``storage.outage_window_s`` (3 s here): ``tiltloop run`` exits 2 with a
  message naming ``tiltloop resume NAME``; once the database is back, resume finishes the
  campaign, still with no design evaluated twice;
- a submit whose job ids could not be written (the outage starts right after the lab accepted
  the jobs): the ids are written once the database answers, and no key is POSTed again;
- ``tiltloop serve``: its driver rides out a 2 s outage; ``/readyz`` answers 503 during it and
  200 after.
- a driver started while the database is down waits for it (reading the campaign, taking the
  lease), then drives the campaign to completion;
- the engine's pool drops connections that died (reset while idle, or during an outage): the
  first query afterwards works without any retry.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from campaign_configs import campaign_config
from campaign_oracles import Bowl
from faults.lab_counts import count_posts
from faults.pg_forwarder import PgForwarder
from pg_schemas import postgres_schema_url
from waits import wait_until

from optimizer.campaign.config import CampaignConfig
from optimizer.campaign.config_io import dump_toml
from optimizer.campaign.dispatch import Dispatcher
from optimizer.campaign.resume import resume_campaign
from optimizer.campaign.service import run_campaign
from oracles.http import HttpOracle
from oracles.labsim import LabSimulator
from storage import NewCandidate, Storage, upgrade
from storage.outage import OutageRetry

pytestmark = pytest.mark.slow  # whole campaigns with outages of up to 30 s

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 16


@pytest.fixture()
def urls(pg_schema: str, forwarder: PgForwarder) -> tuple[str, str]:
    """(the campaign's URL, through the forwarder; the test's own URL, straight to Postgres),
    on a migrated schema."""
    direct = postgres_schema_url(pg_schema)
    upgrade(direct)
    return forwarder.url(direct), direct


def small_campaign(name: str, prior: str, lab: LabSimulator, url: str, ray_address: str,
                   window_s: float = 120.0) -> CampaignConfig:
    return campaign_config(
        name, prior, lab.url, url, ray={"address": ray_address}, sampler={"num_steps": 6},
        workers={"count": 1}, storage={"url": url, "outage_window_s": window_s},
        budget={"q": 4, "max_in_flight": 8, "total": TOTAL, "poll_interval_s": 0.05})


def start_driver(cfg: CampaignConfig, url: str) -> tuple[threading.Thread, dict[str, Any]]:
    """``run_campaign`` in a thread; its dict gets "status" or "error" when the run ends."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["status"] = run_campaign(cfg, url=url)
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            result["error"] = exc

    driver = threading.Thread(target=run, name="driver", daemon=True)
    driver.start()
    return driver, result


def mid_campaign(store: Storage, name: str) -> Callable[[], bool]:
    """True once some results are stored and queries are still at the lab."""
    def check() -> bool:
        try:
            counts = store.query_counts(name)
        except Exception:  # noqa: BLE001 — not created yet
            return False
        return counts["succeeded"] >= 4 and counts["dispatched"] + counts["running"] > 0
    return check


def assert_exactly_once(store: Storage, name: str, lab: LabSimulator,
                        posts: Counter[str] | None = None) -> None:
    """Every query succeeded and is stored; the lab evaluated each key once (and, with
    ``posts``, received one POST per key: no submit was repeated)."""
    counts = store.query_counts(name)
    succeeded = {q.key for q in store.list_queries(name, statuses=("succeeded",))}
    assert counts["succeeded"] == TOTAL and sum(counts.values()) == TOTAL, counts
    evaluations = lab.store.evaluations
    assert max(evaluations.values()) == 1, dict(evaluations)  # no design paid twice
    assert set(evaluations) == succeeded  # every paid evaluation is stored
    if posts is not None:
        assert set(posts) == succeeded and set(posts.values()) == {1}, dict(posts)


@pytest.mark.parametrize("outage_s", [2.0, 30.0])
def test_campaign_rides_out_an_outage_without_resume(
        outage_s: float, ray_session: str, tiny_prior_path: str, forwarder: PgForwarder,
        urls: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    via, direct = urls
    name = f"outage-{int(outage_s)}"
    with LabSimulator(Bowl(seed=0, latency_s=0.5)) as lab, Storage.open(direct) as store:
        posts = count_posts(lab)
        cfg = small_campaign(name, tiny_prior_path, lab, via, ray_session)
        with caplog.at_level(logging.WARNING):
            driver, result = start_driver(cfg, via)
            wait_until(lambda: mid_campaign(store, name)() or not driver.is_alive(), 180,
                     "results stored with queries still in flight", lambda: str(result))
            assert driver.is_alive(), result
            forwarder.felt_outage(outage_s)
            forwarded = forwarder.forwarded
            assert store.query_counts(name)["succeeded"] < TOTAL  # it was down mid-campaign
            driver.join(timeout=outage_s + 240)
        assert not driver.is_alive(), f"driver still running: {store.query_counts(name)}"
        assert "error" not in result, result["error"]
        assert result["status"].status == "completed", result["status"]
        assert_exactly_once(store, name, lab, posts)
        assert len(store.list_events(name, kind="driver.started")) == 1  # never resumed
    waits = [r.getMessage() for r in caplog.records
             if r.name == "storage.outage" and "retrying in" in r.getMessage()]
    assert waits, "the driver never saw the outage"
    assert all(f"campaign {name}:" in m and "outage window" in m for m in waits)
    assert forwarder.forwarded > forwarded  # the pool reconnected after the outage


def test_outage_past_the_window_exits_with_the_resume_command_then_resume_finishes(
        ray_session: str, tiny_prior_path: str, forwarder: PgForwarder, urls: tuple[str, str],
        tmp_path: Path) -> None:
    via, direct = urls
    name = "outage-long"
    with LabSimulator(Bowl(seed=0, latency_s=0.5)) as lab, Storage.open(direct) as store:
        path = tmp_path / "campaign.toml"
        path.write_text(dump_toml(small_campaign(name, tiny_prior_path, lab, via, ray_session,
                                                 window_s=3.0)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        log = tmp_path / "run.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "optimizer.cli", "run", str(path)],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: mid_campaign(store, name)() or proc.poll() is not None, 240,
                         "results stored with queries still in flight",
                         lambda: log.read_text(errors="replace")[-3000:])
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                outage = threading.Thread(target=forwarder.felt_outage, args=(12.0,), daemon=True)
                outage.start()
                wait_until(lambda: forwarder.refused > 0, 60, "the driver to feel the outage")
                started = time.monotonic()
                rc = proc.wait(timeout=60)
                gave_up_after = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        text = log.read_text(errors="replace")
        assert rc == 2, text[-3000:]
        assert forwarder.refusing, f"the driver exited only after the outage ({gave_up_after:.1f} s)"
        assert 2.5 <= gave_up_after, gave_up_after  # measured from its first failure, ~3 s
        assert f"`tiltloop resume {name} --url " in text, text[-3000:]
        assert "storage.outage_window_s = 3" in text, text[-3000:]
        assert f"campaign {name}: the database is unreachable while" in text  # the WARNINGs
        assert "Traceback" not in text, text[-3000:]
        assert store.query_counts(name)["succeeded"] < TOTAL

        outage.join(timeout=30)
        assert not forwarder.refusing
        status = resume_campaign(name, via)
        assert status.status == "completed", status
        # a driver that gave up before writing job ids re-POSTs those keys on resume: the lab
        # deduplicates them by the idempotency key, so each design is still evaluated once
        assert_exactly_once(store, name, lab)


class CountingOracle(HttpOracle):
    """The HTTP oracle, counting each key it submits; ``after_submit`` runs once the lab
    accepted a batch (before the dispatcher writes the job ids)."""

    def __init__(self, *args: Any, after_submit: Callable[[], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.submitted: Counter[str] = Counter()
        self._after_submit = after_submit

    def submit(self, requests):  # type: ignore[no-untyped-def]
        handles = super().submit(requests)
        self.submitted.update(r.key for r in requests)
        self._after_submit()
        return handles


def test_job_ids_of_an_accepted_submit_are_written_after_the_outage_not_resent(
        forwarder: PgForwarder, urls: tuple[str, str]) -> None:
    import numpy as np

    via, direct = urls
    with LabSimulator(Bowl(seed=0, latency_s=0.2)) as lab, Storage.open(via) as store, \
            Storage.open(direct) as observer:
        store.create_campaign("ids", {"name": "ids"}, budget=4)
        store.record_round("ids", 0, alpha=0.5, oracle_name="lab", selected=[0, 1, 2, 3],
                           candidates=[NewCandidate(np.array([i, -i], dtype=float))
                                       for i in range(4)])
        outages: list[int] = []

        def cut_once() -> None:  # the database goes away right after the lab accepted the jobs
            if not outages:
                outages.append(1)
                forwarder.outage(1.5)

        posts = count_posts(lab)
        oracle = CountingOracle(lab.url, after_submit=cut_once)
        dispatcher = Dispatcher(store, "ids", oracle, objectives=("y",), limit=8)
        retry = OutageRetry(30, campaign="ids")
        try:
            # the retried dispatch sends nothing: the 4 queries went out in the first attempt
            assert retry.call(dispatcher.dispatch, "dispatching queries") == 0
            assert len(oracle.submitted) == 4
            assert retry.retries > 0  # the job ids' write failed and was retried
            rows = observer.list_queries("ids")
            assert all(q.job_id for q in rows), rows  # written once the database answered
            wait_until(lambda: retry.call(dispatcher.poll, "polling").finished == 0 and
                     observer.query_counts("ids")["succeeded"] == 4, 30, "4 results")
        finally:
            dispatcher.close()
        assert set(oracle.submitted.values()) == {1} and len(oracle.submitted) == 4
        assert set(posts.values()) == {1} and len(posts) == 4, posts  # one POST per key
        assert max(lab.store.evaluations.values()) == 1
        assert {q.attempts for q in observer.list_queries("ids")} == {1}


def test_serve_rides_out_a_2s_outage_and_readyz_follows_it(
        ray_session: str, tiny_prior_path: str, forwarder: PgForwarder, urls: tuple[str, str],
        tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "optimizer" / "service"))
    from serve_helpers import ServeProcess, create_campaigns

    via, direct = urls
    name = "served"
    with LabSimulator(Bowl(seed=0, latency_s=0.5)) as lab, Storage.open(direct) as store:
        posts = count_posts(lab)
        create_campaigns(direct, [small_campaign(name, tiny_prior_path, lab, via, ray_session)])
        serve = ServeProcess(via, tmp_path / "serve.log", env={"RAY_ADDRESS": ray_session},
                             args=("--lease-ttl", "20", "--tick", "0.3"))
        try:
            def ready() -> int:
                return httpx.get(f"{serve.url}/readyz", timeout=10).status_code

            wait_until(mid_campaign(store, name), 180, "results stored with queries in flight",
                     serve.stderr_tail)
            assert ready() == 200
            outage = threading.Thread(target=forwarder.felt_outage, args=(2.0,), daemon=True)
            outage.start()
            during = ready()
            outage.join(timeout=130)
            wait_until(lambda: ready() == 200, 30, "/readyz to answer 200 again", serve.stderr_tail)
            wait_until(lambda: store.load_campaign(name).status == "completed", 180,
                     "the campaign to complete", serve.stderr_tail)
        finally:
            serve.close(timeout_s=60)
        text = (tmp_path / "serve.log").read_text(errors="replace")
        assert during == 503, text[-3000:]
        assert "its driver failed" not in text, text[-3000:]  # no restart: the driver rode it out
        assert f"campaign {name}: the database is unreachable while" in text, text[-3000:]
        assert_exactly_once(store, name, lab, posts)
        assert len(store.list_events(name, kind="driver.started")) == 1


def test_pool_drops_dead_connections_so_the_first_query_after_an_outage_works(
        forwarder: PgForwarder, urls: tuple[str, str]) -> None:
    from storage.errors import DatabaseUnreachable

    via, _ = urls
    with Storage.open(via) as store:
        store.create_campaign("pool", {"name": "pool"}, budget=1)
        assert forwarder.open >= 1  # the pool keeps a connection
        # 1. connections reset while idle: the next query (no retry helper) gets a fresh one
        before = forwarder.forwarded
        assert forwarder.cut() >= 1
        assert store.load_campaign("pool").status == "active"
        assert forwarder.forwarded > before
        # 2. an outage: queries fail while it lasts, the first one after it works
        forwarder.refuse(True)
        forwarder.cut()
        with pytest.raises(DatabaseUnreachable):
            store.query_counts("pool")
        forwarder.refuse(False)
        assert store.load_campaign("pool").status == "active"


def test_outage_right_after_the_last_results_were_stored_still_completes(
        ray_session: str, tiny_prior_path: str, forwarder: PgForwarder,
        urls: tuple[str, str]) -> None:
    """The retried poll finds nothing left to record (its first attempt stored the results
    before the connection broke): the driver must re-read its status, not wait forever on a
    stale in-flight count."""
    via, direct = urls
    name = "outage-last"
    with LabSimulator(Bowl(seed=0, latency_s=0.3)) as lab, Storage.open(direct) as observer:
        cfg = small_campaign(name, tiny_prior_path, lab, via, ray_session)
        hits: list[float] = []
        original = Storage.get_queries

        def get_queries(self: Storage, keys: Any, *a: Any, **kw: Any) -> Any:
            # the driver reads what its poll just finished; once every result is stored, the
            # database goes away for 1 s right there
            if not hits and observer.query_counts(name)["succeeded"] == TOTAL:
                hits.append(time.monotonic())
                forwarder.outage(1.0)
            return original(self, keys, *a, **kw)

        Storage.get_queries = get_queries  # type: ignore[method-assign]
        try:
            driver, result = start_driver(cfg, via)
            driver.join(timeout=90)
        finally:
            Storage.get_queries = original  # type: ignore[method-assign]
        assert hits, "the outage was never injected"
        assert not driver.is_alive(), f"the driver hangs: {observer.query_counts(name)}"
        assert "error" not in result, result["error"]
        assert result["status"].status == "completed"
        assert all(r.status == "complete" for r in observer.list_rounds(name))
        assert_exactly_once(observer, name, lab)


def test_a_driver_started_during_an_outage_waits_for_the_database_then_drives(
        ray_session: str, tiny_prior_path: str, forwarder: PgForwarder, urls: tuple[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """`tiltloop resume` restarted by a supervisor while the database is down: reading the
    campaign and taking the lease ride out the outage like every later unit of work."""
    from optimizer.campaign.service import drive, start_or_resume

    via, direct = urls
    name = "outage-at-start"
    with LabSimulator(Bowl(seed=0, latency_s=0.2)) as lab, Storage.open(direct) as store, \
            Storage.open(via) as campaign_store:
        cfg = small_campaign(name, tiny_prior_path, lab, via, ray_session)
        start_or_resume(cfg, store, source="test")
        forwarder.outage(3.0)  # cut and refused now; back in 3 s
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING):
            status = drive(cfg, campaign_store, timeout_s=240)
        assert time.monotonic() - t0 >= 2.5  # it waited for the database
        assert status.status == "completed", status
        assert_exactly_once(store, name, lab)
    waits = [r.getMessage() for r in caplog.records
             if r.name == "storage.outage" and "retrying in" in r.getMessage()]
    assert any("reading the campaign" in m for m in waits), waits
