"""The issue's failover test: two ``tiltloop serve`` processes on one Postgres schema and one Ray
cluster drive 4 campaigns against the lab simulator; one is SIGKILLed mid-round; the other takes
its campaigns over after the lease time-out and every campaign completes its budget, with each
design evaluated at most once by the lab and every evaluation stored."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
from pg_schemas import postgres_schema_url
from campaign_oracles import Bowl
from serve_helpers import (ServeProcess, campaign_states, create_campaigns, small_config,
                           wait_until)

from optimizer.campaign.service import open_storage
from oracles.labsim import LabSimulator


NAMES = ["f1", "f2", "f3", "f4"]
TOTAL = 6
#: f1 and f2 (taken by replica A, oldest first) run longer, so A is still mid-campaign once B
#: has started (a replica's start, joining Ray, takes seconds on loaded CI machines)
TOTAL_A = 24
LEASE_TTL_S = 5


@pytest.mark.slow
def test_sigkilled_replica_is_taken_over_and_every_campaign_completes(
        ray_session: str, pg_schema: str, tiny_prior_path: str, tmp_path: Path) -> None:
    url = postgres_schema_url(pg_schema)
    env = {"RAY_ADDRESS": ray_session}  # both replicas join the test session's Ray cluster
    with LabSimulator(Bowl(seed=0, latency_s=1.5)) as lab, open_storage(url, create=True) as st:
        create_campaigns(url, [small_config(n, tiny_prior_path, lab.url, url,
                                            total=TOTAL_A if n in ("f1", "f2") else TOTAL)
                               for n in NAMES])
        procs: list[ServeProcess] = []

        def detail() -> str:
            return "\n".join([campaign_states(st, NAMES), f"lab: {lab.stats()}",
                              *(p.stderr_tail() for p in procs)])

        def held_by(owner: str) -> list[str]:
            return [n for n in NAMES if (le := st.campaign_lease(n)) and le.owner == owner]

        try:
            # A takes two campaigns first (its limit), B the other two
            procs.append(ServeProcess(url, tmp_path / "a.log", env=env, args=(
                "--lease-ttl", str(LEASE_TTL_S), "--tick", "0.3", "--max-campaigns", "2")))
            a = procs[0]
            wait_until(lambda: len(held_by(a.owner)) == 2, 60, "replica A to lease 2 campaigns",
                       detail)
            procs.append(ServeProcess(url, tmp_path / "b.log", env=env, args=(
                "--lease-ttl", str(LEASE_TTL_S), "--tick", "0.3")))
            b = procs[1]
            wait_until(lambda: len(held_by(b.owner)) == 2, 60, "replica B to lease the other 2",
                       detail)
            mine = held_by(a.owner)

            def a_mid_round() -> bool:  # A has queries at the lab that it has not finished
                return any(st.query_counts(n)["dispatched"] + st.query_counts(n)["running"] > 0
                           for n in held_by(a.owner))

            wait_until(a_mid_round, 90, "replica A to have queries in flight", detail, 0.1)
            a.kill()  # SIGKILL: no lease released, no transaction finished
            assert a.process.returncode == -signal.SIGKILL

            wait_until(lambda: all(n in held_by(b.owner) or st.load_campaign(n).status ==
                                   "completed" for n in mine), LEASE_TTL_S + 30,
                       "replica B to take over A's campaigns", detail)
            wait_until(lambda: all(st.load_campaign(n).status == "completed" for n in NAMES), 150,
                       "every campaign to complete", detail, 0.5)
            b.close(timeout_s=60)
            assert b.process.returncode == 0, detail()
        finally:
            for p in procs:
                p.kill()
                p.close(timeout_s=5)

        for name in NAMES:
            counts, total = st.query_counts(name), TOTAL_A if name in ("f1", "f2") else TOTAL
            assert counts["succeeded"] == total and sum(counts.values()) == total, (name, counts)
            assert st.campaign_lease(name) is None
        for name in mine:  # the takeover is on record, naming the dead replica
            takeovers = [e.payload for e in st.list_events(name, kind="campaign.lease")
                         if e.payload.get("previous_owner") == a.owner]
            assert takeovers and takeovers[0]["owner"] == b.owner, name
        b_log = b.log_path.read_text()
        assert all(f"campaign {n}: taking it over from replica {a.owner}" in b_log for n in mine)
        stats = lab.stats()
        assert max(stats["evaluations"].values()) == 1, stats["evaluations"]
        stored = {q.key for n in NAMES for q in st.list_queries(n, statuses=("succeeded",))}
        assert set(stats["evaluations"]) == stored  # every paid result is stored, as succeeded
